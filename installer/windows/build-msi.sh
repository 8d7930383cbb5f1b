#!/usr/bin/env bash
# Builds the Windows MSI on Linux with wixl (msitools) from main.wxs:
#
#   installer/windows/build-msi.sh BIN_DIR VERSION OUT.msi
#
# BIN_DIR holds kubevision-hmi.exe and kubevision.exe (cross-built for
# x86_64-pc-windows-gnu). wixl ignores WiX's Permanent and NeverOverwrite
# attributes, so they are set in the Component table afterwards with
# msibuild: without them an upgrade (which removes the old product first)
# or a removal would delete ProgramData\KubeVision\kubevision.toml.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
repo=$(cd "$here/../.." && pwd)
die() { echo "build-msi: $*" >&2; exit 1; }
[ $# -eq 3 ] || die "usage: build-msi.sh BIN_DIR VERSION OUT.msi"
bin=$1 version=$2 out=$3
command -v wixl >/dev/null || die "wixl is missing: run scripts/setup-windows"
for exe in kubevision-hmi.exe kubevision.exe; do
  [ -f "$bin/$exe" ] || die "$bin/$exe is missing: cargo build --target x86_64-pc-windows-gnu -p kubevision-hmi -p kubevision-cli"
done
# dlib's model files, from where scripts/setup-models put them (as build-deb.sh).
models=${KUBEVISION_MODELS_DIR:-${XDG_DATA_HOME:-$HOME/.local/share}/kubevision/models}
model_files=(dlib_face_recognition_resnet_model_v1.dat shape_predictor_5_face_landmarks.dat)
for f in "${model_files[@]}"; do
  [ -f "$models/$f" ] || die "$models/$f is missing: run scripts/setup-models first"
done
[[ $version =~ ^[0-9]+\.[0-9]+\.[0-9]+$ ]] || die "$version is not a version MAJOR.MINOR.PATCH"

work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
mkdir "$work/stage"
cp "$bin/kubevision-hmi.exe" "$bin/kubevision.exe" \
  "$repo/assets/cascades/haarcascade_frontalface_default.xml" \
  "$here/kubevision.toml" "${model_files[@]/#/$models/}" "$work/stage/"
# wixl resolves sources relative to the folder it runs in, not absolute ones.
(cd "$work" && wixl -a x64 -D Version="$version" -D StageDir=stage -o kubevision.msi "$here/main.wxs" 2>wixl.log) ||
  { cat "$work/wixl.log" >&2; die "wixl failed"; }
# GLib warns about the attributes wixl does not know; anything else is news.
if grep -v -e '^$' -e "has no property named '\(InstallPrivileges\|Platform\|Schedule\|Permanent\|NeverOverwrite\)'" "$work/wixl.log" >&2; then
  die "wixl said more than the known warnings (above)"
fi
msidb=(msibuild "$work/kubevision.msi" -q)
"${msidb[@]}" "UPDATE \`Component\` SET \`Attributes\` = 400 WHERE \`Component\` = 'Config'"
"${msidb[@]}" "UPDATE \`Component\` SET \`Attributes\` = 272 WHERE \`Component\` = 'StoreFolderComponent'"
mkdir -p "$(dirname "$out")"
mv "$work/kubevision.msi" "$out.tmp"
mv "$out.tmp" "$out"
