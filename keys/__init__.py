"""The operator's commands: what `python run.py init | caseworker add/list/passwd/grant | channel list
| purge | status | statistics | backup | restore | migrate` do (keys/commands.py), each returning an
exit status and turning an operator's mistake into one clear line.

run.py only parses the command line and hands over to these functions; `python run.py onion …` is
onion/cli.py. The folder keeps its name: the top level (dropbox/, onion/, keys/, tests/) is fixed,
and nothing an operator types depends on it.
"""
