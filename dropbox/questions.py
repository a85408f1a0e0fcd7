"""The structured questions an operator adds to a channel, and the answers to them.

`Channel.questions` (a TEXT column) holds a JSON list. Each entry is an object:

    [
      {"id": "department",
       "label": {"en": "Which department is this about?",
                 "da": "Hvilken afdeling drejer det sig om?",
                 "sv": "Vilken avdelning gäller det?"},
       "required": false,
       "kind": "text"},
      {"id": "when", "label": "When did it happen?", "required": true, "kind": "textarea"}
    ]

- `id`: 1 to 40 characters from a-z, 0-9, "_" and "-", unique within the channel. The form field
  is `answer_<id>`, and answers are stored (sealed) as {id: answer}, so labels can be reworded
  later without losing what older answers were about.
- `label`: either one string, shown in every language, or an object from language code to
  string. A language without its own label falls back to the install's default language, then
  English, then the first label given. At most 500 characters; shown escaped, never as HTML.
- `required`: optional, default false. A required question must be answered to submit.
- `kind`: optional, default "text": "text" is one line, "textarea" several.

At most MAX_QUESTIONS per channel. Answers are limited to Config.max_field_chars each.
`parse_questions` raises `InvalidQuestions` for anything else; whoever edits a channel should call
it before saving, so a mistake is reported to the operator instead of reaching the public form.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from dataclasses import dataclass

MAX_QUESTIONS = 30
MAX_LABEL_CHARS = 500
KINDS = ("text", "textarea")
ANSWER_PREFIX = "answer_"

_ID = re.compile(r"[a-z0-9_-]{1,40}")
_KEYS = frozenset({"id", "label", "required", "kind"})


class InvalidQuestions(ValueError):
    """A channel's questions are not in the documented shape; the message says what is wrong."""


@dataclass(frozen=True)
class Question:
    id: str
    labels: Mapping[str, str]
    required: bool = False
    kind: str = "text"

    @property
    def field_name(self) -> str:
        return ANSWER_PREFIX + self.id

    def label(self, lang: str, default_lang: str) -> str:
        for code in (lang, default_lang, "en"):
            if code in self.labels:
                return self.labels[code]
        return next(iter(self.labels.values()))


def parse_questions(text: str) -> list[Question]:
    """The questions in a channel's `questions` column; InvalidQuestions if malformed."""
    try:
        value = json.loads(text or "[]")
    except ValueError as e:
        raise InvalidQuestions("not valid JSON") from e
    if not isinstance(value, list):
        raise InvalidQuestions("must be a JSON list")
    if len(value) > MAX_QUESTIONS:
        raise InvalidQuestions(f"at most {MAX_QUESTIONS} questions")
    questions = [_question(entry, index) for index, entry in enumerate(value)]
    ids = [q.id for q in questions]
    if len(set(ids)) != len(ids):
        raise InvalidQuestions("question ids must be unique")
    return questions


def _question(entry: object, index: int) -> Question:
    where = f"question {index + 1}"
    if not isinstance(entry, dict):
        raise InvalidQuestions(f"{where}: must be an object")
    unknown = set(entry) - _KEYS
    if unknown:
        raise InvalidQuestions(f"{where}: unknown keys {sorted(unknown)}")
    qid = entry.get("id")
    if not isinstance(qid, str) or not _ID.fullmatch(qid):
        raise InvalidQuestions(f"{where}: id must be 1-40 characters of a-z, 0-9, '_' or '-'")
    required = entry.get("required", False)
    if not isinstance(required, bool):
        raise InvalidQuestions(f"{where}: required must be true or false")
    kind = entry.get("kind", "text")
    if kind not in KINDS:
        raise InvalidQuestions(f"{where}: kind must be one of {KINDS}")
    return Question(id=qid, labels=_labels(entry.get("label"), where), required=required, kind=kind)


def _labels(label: object, where: str) -> dict[str, str]:
    """Language code -> label; a plain string becomes the label of every language (key "")."""
    labels = {"": label} if isinstance(label, str) else label
    if not isinstance(labels, dict) or not labels:
        raise InvalidQuestions(f"{where}: label must be a string or an object of language code to string")
    for code, text in labels.items():
        if code != "" and not (isinstance(code, str) and re.fullmatch(r"[a-z]{2,3}", code)):
            raise InvalidQuestions(f"{where}: label languages must be codes such as 'en'")
        if not isinstance(text, str) or not text.strip() or len(text) > MAX_LABEL_CHARS:
            raise InvalidQuestions(f"{where}: each label must be 1-{MAX_LABEL_CHARS} characters")
    return {code: text.strip() for code, text in labels.items()}


def answers_for(questions: list[Question], fields: Mapping[str, str]) -> tuple[dict[str, str], list[Question]]:
    """The non-empty answers to these questions, and the required questions left unanswered.

    Fields named after questions the channel does not have are dropped.
    """
    answers: dict[str, str] = {}
    missing: list[Question] = []
    for q in questions:
        value = fields.get(q.field_name, "").strip()
        if value:
            answers[q.id] = value
        elif q.required:
            missing.append(q)
    return answers, missing
