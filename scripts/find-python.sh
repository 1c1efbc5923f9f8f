#!/usr/bin/env bash
# Print the path of a Python >= 3.13 interpreter (the embedded server, mongoeco, needs 3.13).
#
# Order: $INSIGHTDB_PYTHON if set; python3.13, python3.14, python3 on PATH; any pyenv-installed
# 3.13+ under "$(pyenv root)/versions/*/bin/python", newest first ($PYENV_ROOT or ~/.pyenv when
# pyenv itself is not on PATH). Each candidate is run to ask its version, because a pyenv shim
# on PATH may exist for a version that is not selected.
# Exits 1 with a message on stderr when none is found.
set -euo pipefail

MIN_MAJOR=3
MIN_MINOR=13

# Print the real interpreter path of $1 if it runs and is new enough; fail otherwise.
check() {
    "$1" -c "import sys
if sys.version_info < (${MIN_MAJOR}, ${MIN_MINOR}):
    raise SystemExit(1)
print(sys.executable)" 2>/dev/null
}

if [[ -n "${INSIGHTDB_PYTHON:-}" ]]; then
    if check "${INSIGHTDB_PYTHON}"; then
        exit 0
    fi
    echo "find-python: INSIGHTDB_PYTHON=${INSIGHTDB_PYTHON} is not a runnable Python >= ${MIN_MAJOR}.${MIN_MINOR}" >&2
    exit 1
fi

for name in python3.13 python3.14 python3; do
    if command -v "${name}" >/dev/null 2>&1 && check "${name}"; then
        exit 0
    fi
done

# pyenv's root: from pyenv itself, else its usual place (a non-login shell may lack it on PATH).
if command -v pyenv >/dev/null 2>&1; then
    root="$(pyenv root)"
else
    root="${PYENV_ROOT:-${HOME}/.pyenv}"
fi
if [[ -d "${root}/versions" ]]; then
    # Newest first (version sort, descending).
    while IFS= read -r candidate; do
        if [[ -x "${candidate}" ]] && check "${candidate}"; then
            exit 0
        fi
    done < <(find "${root}/versions" -mindepth 3 -maxdepth 3 -path '*/bin/python' 2>/dev/null \
        | sort -V -r)
fi

cat >&2 <<MSG
find-python: no Python >= ${MIN_MAJOR}.${MIN_MINOR} found.
  Tried: \$INSIGHTDB_PYTHON, python3.13, python3.14 and python3 on PATH, and pyenv's versions.
  Install one (for example: pyenv install 3.13) or set INSIGHTDB_PYTHON=/path/to/python3.13.
MSG
exit 1
