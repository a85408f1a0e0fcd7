# Sourced by scripts/test and scripts/run: install what the drop box needs on a fresh Debian machine.
# Usage: source scripts/setup-env.sh "<debian packages>" "<pip extras>"
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
VENV="$ROOT/.venv"

_apt_install() {
    local missing=()
    for pkg in "$@"; do dpkg -s "$pkg" >/dev/null 2>&1 || missing+=("$pkg"); done
    ((${#missing[@]})) || return 0
    local sudo=""
    [ "$(id -u)" = 0 ] || sudo="sudo"
    echo "Installing Debian packages: ${missing[*]}" >&2
    $sudo apt-get update -qq
    DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
}

_python_env() {
    local extras="$1"
    if [ ! -x "$VENV/bin/python" ]; then
        python3 -c 'import ensurepip, venv' 2>/dev/null || _apt_install python3-venv
        python3 -m venv "$VENV"
    fi
    local stamp="$VENV/.installed-${extras:-base}"
    if [ ! -f "$stamp" ] || [ "$ROOT/pyproject.toml" -nt "$stamp" ]; then
        local target="$ROOT"
        [ -z "$extras" ] || target="$ROOT[$extras]"
        "$VENV/bin/pip" install -q --disable-pip-version-check -e "$target"
        touch "$stamp"
    fi
}

_apt_install $1
_python_env "$2"
