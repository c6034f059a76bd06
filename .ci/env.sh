# Sourced by .ci/run and .ci/example: a Python environment with taskproc installed.
# Uses the active virtual environment, or makes and activates .venv (installing Debian's
# python3-venv if this Python lacks venv/ensurepip), since Debian's own Python refuses
# system-wide pip installs. Then installs taskproc with the extras in $TASKPROC_EXTRAS.
log() { echo "${0##*/}: $*" >&2; }
apt_install() {  # apt_install PACKAGE...: install what is missing, quietly
    command -v apt-get >/dev/null || { log "no apt-get: cannot install $*"; return 1; }
    export DEBIAN_FRONTEND=noninteractive
    if [ -z "$(find /var/lib/apt/lists -maxdepth 1 -name '*Packages*' -print -quit 2>/dev/null)" ]; then
        apt-get update -qq >/dev/null
    fi
    apt-get install -y -qq --no-install-recommends "$@" >/dev/null \
        || { apt-get update -qq >/dev/null && apt-get install -y -qq --no-install-recommends "$@" >/dev/null; }
}

if [ -z "${VIRTUAL_ENV:-}" ]; then
    PY=${PYTHON:-python3}
    if ! "$PY" -c "import venv, ensurepip" 2>/dev/null; then
        apt_install python3-venv
    fi
    [ -x .venv/bin/python ] || "$PY" -m venv .venv
    # shellcheck disable=SC1091
    . .venv/bin/activate
fi
export PYTHON=python
log "installing taskproc${TASKPROC_EXTRAS:+[$TASKPROC_EXTRAS]} into $(python -c 'import sys; print(sys.prefix)')"
python -m pip install --quiet --disable-pip-version-check -e ".${TASKPROC_EXTRAS:+[$TASKPROC_EXTRAS]}"
