#!/usr/bin/env bash
# Builds the release artifacts into dist/: one wheel per supported CPython,
# tagged manylinux_2_17 (manylinux2014) so it installs on glibc 2.17 and newer
# (RHEL 7+, Debian 8+, Ubuntu 14.04+), and the sdist; then checks each of them.
#
#   bash scripts/build-wheels.sh
#
# zig (PyPI's `ziglang`) links the extension against glibc 2.17's symbols, so
# no manylinux container is needed. Interpreters: python3.X on PATH or in
# ~/.pyenv/versions/3.X.*; a version found only in the Debian sid chroot
# ($SID_ROOT, default /opt/sid, which cannot run on this glibc) is built for
# through PyO3's cross-compile config (its sysconfig data) and
# checked inside the chroot (through $SID_RUN, default the shared
# sid-python/run.sh). Each wheel must carry the LICENSE, pass
# `auditwheel show` as manylinux_2_17 or older, install in a fresh venv and
# import with `ferroloop.__version__` equal to its own version; the sdist
# must build and install likewise.
set -euo pipefail
cd "$(dirname "$0")/.."
root=$PWD
# The supported versions are pyproject.toml's per-version classifiers.
mapfile -t versions < <(sed -n 's/^ *"Programming Language :: Python :: \(3\.[0-9]*\)",$/\1/p' pyproject.toml)
(( ${#versions[@]} )) || { echo "build-wheels: no Python classifiers in pyproject.toml" >&2; exit 1; }
sid_root=${SID_ROOT:-/opt/sid}
sid_run=${SID_RUN:-/work/shared/reference/sid-python/run.sh}
work=$root/target/wheel-build   # under target/: ignored by git, visible inside the chroot
start=$SECONDS

host_python() {  # the interpreter for version $1 that runs here, if any
    local cand
    for cand in "$(command -v "python$1" || true)" "$HOME"/.pyenv/versions/"$1".*/bin/python"$1"; do
        [[ -n "$cand" && -x "$cand" ]] && "$cand" -c '' 2>/dev/null && { echo "$cand"; return; }
    done
    return 0
}

tools_python=$(host_python 3.11)
[[ -n "$tools_python" ]] || { echo "build-wheels: python3.11 is needed to run maturin" >&2; exit 1; }
rm -rf "$work" dist
mkdir -p "$work" dist
"$tools_python" -m venv "$work/tools"
"$work/tools/bin/pip" install -q 'maturin>=1.9,<2' ziglang auditwheel
export PATH="$work/tools/bin:$PATH"   # maturin runs zig through this venv's ziglang

build=(maturin build --release --zig --compatibility manylinux2014 --out dist)
host=() sid=()
for v in "${versions[@]}"; do
    py=$(host_python "$v")
    if [[ -n "$py" ]]; then
        host+=("$v")
        "${build[@]}" -i "$py"
    elif compgen -G "$sid_root/usr/lib/python$v/_sysconfigdata_*.py" > /dev/null; then
        sid+=("$v")
        PYO3_CROSS_LIB_DIR="$sid_root/usr/lib/python$v" \
            "${build[@]}" --target x86_64-unknown-linux-gnu -i "python$v"
    else
        echo "build-wheels: no CPython $v here (neither on PATH, in ~/.pyenv nor in $sid_root)" >&2
        exit 1
    fi
done
maturin sdist --out dist
echo "build-wheels: built in $((SECONDS - start)) s: ${host[*]} here, ${sid[*]:-none} for the sid chroot"

version=$(sed -n 's/^version = "\(.*\)"$/\1/p' Cargo.toml | head -1)
check='import importlib.metadata as m, sys, ferroloop
assert ferroloop.__version__ == m.version("ferroloop") == sys.argv[1], (ferroloop.__version__, sys.argv[1])
assert ferroloop.run(__import__("asyncio").sleep(0, "ok")) == "ok"
print("ok", sys.version.split()[0], ferroloop.__version__)'

for whl in dist/*.whl; do
    unzip -l "$whl" | grep "dist-info/licenses/LICENSE$" > /dev/null || { echo "$whl: no LICENSE" >&2; exit 1; }
    auditwheel show "$whl" | tr -d "\n" | grep -E '"manylinux_2_(5|12|17)_x86_64"' > /dev/null \
        || { auditwheel show "$whl" >&2; echo "$whl: not manylinux_2_17 or older" >&2; exit 1; }
done
tar -tzf dist/ferroloop-"$version".tar.gz | grep "^ferroloop-$version/LICENSE$" > /dev/null || { echo "sdist: no LICENSE" >&2; exit 1; }
for v in "${host[@]}"; do
    venv=$work/venv-$v
    "$(host_python "$v")" -m venv "$venv"
    "$venv/bin/pip" install -q --no-index dist/*-cp"${v/./}"-*.whl
    (cd "$work" && "$venv/bin/python" -c "$check" "$version")
done
for v in "${sid[@]}"; do
    venv=$work/venv-$v
    (cd "$work" && bash "$sid_run" "python$v" -m venv "$venv" \
        && bash "$sid_run" "$venv/bin/pip" install -q --no-index "$root"/dist/*-cp"${v/./}"-*.whl \
        && bash "$sid_run" "$venv/bin/python" -c "$check" "$version")
done
# The sdist builds from source (Rust toolchain needed); the target dir is
# shared so the dependencies compiled above are reused.
venv=$work/venv-sdist
"$tools_python" -m venv "$venv"
CARGO_TARGET_DIR=$root/target "$venv/bin/pip" install -q dist/ferroloop-"$version".tar.gz
(cd "$work" && "$venv/bin/python" -c "$check" "$version")
ls -l dist
echo "build-wheels: done in $((SECONDS - start)) s"
