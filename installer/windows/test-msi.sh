#!/usr/bin/env bash
# MSI test under Wine, run by scripts/test after the Windows build
# (target/x86_64-pc-windows-gnu/debug):
#  1. build the MSI with wixl (build-msi.sh) at the workspace's version, and a
#     second one a patch version later, from the same programs;
#  2. install the first with msiexec /qn into the project's Wine prefix
#     (.cache/wine): the programs, the cascade, ProgramData\KubeVision with
#     its configuration and data folder, one entry in the installed list, the
#     doctor run by the installer; then the installed kubevision.exe doctor,
#     which must pass; the kiosk's store made by kubevision-hmi.exe --init-store;
#  3. upgrade to the second (same UpgradeCode): still one entry, now another
#     product code; an edited configuration and the data folder's content
#     kept, the store's audit chain intact (--verify-audit), the doctor passing;
#  4. remove it: the programs gone, ProgramData\KubeVision and its content kept.
# The key lines of the MSI logs are printed (target/windows-msi/*.log).
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
repo=$(cd "$here/../.." && pwd)
bin=$repo/target/x86_64-pc-windows-gnu/debug
out=$repo/target/windows-msi

step() { printf '\n== %s\n' "$*"; }
die() { echo "test-msi: FAILED: $*" >&2; exit 1; }

export WINEPREFIX="$repo/.cache/wine" WINEDEBUG=-all
[ -f "$WINEPREFIX/drive_c/windows/system32/bcryptprimitives.dll" ] || die "no Wine prefix: run scripts/setup-windows"
pf="$WINEPREFIX/drive_c/Program Files/KubeVision"
pd="$WINEPREFIX/drive_c/ProgramData/KubeVision"
# "{GUID}|||KubeVision" for each installed KubeVision product.
product_codes() { wine uninstaller --list 2>/dev/null | tr -d '\r' | sed -n 's/^\({[0-9A-F-]*}\)|||KubeVision$/\1/p'; }
msiexec() { # msiexec ARGS... LOG: runs it, keeps the log, fails with its tail
  local log=${*: -1}
  local status=0
  wine msiexec "${@:1:$#-1}" /qn /l*v "$(winepath -w "$log")" || status=$?
  [ "$status" = 0 ] || { tail -n 40 "$log" >&2; die "msiexec ${*:1:2} exited $status"; }
}
show_log() { # the lines that say what happened
  grep -a -E 'Product: |Action ended [0-9:]+: (RemoveExistingProducts|InstallFiles|RunDoctor|InstallFinalize)|RunDoctor|MainEngineThread is returning' "$1" | sed 's/^/    /' || true
}

version=$(sed -n '/^\[workspace.package\]/,/^\[/s/^version = "\(.*\)"/\1/p' "$repo/Cargo.toml")
[[ $version =~ ^([0-9]+)\.([0-9]+)\.([0-9]+)$ ]] || die "workspace version $version is not MAJOR.MINOR.PATCH"
next="${BASH_REMATCH[1]}.${BASH_REMATCH[2]}.$((BASH_REMATCH[3] + 1))"

step "building the MSIs $version and $next with wixl"
rm -rf "$out"
mkdir -p "$out"
"$here/build-msi.sh" "$bin" "$version" "$out/kubevision-$version-x86_64.msi"
"$here/build-msi.sh" "$bin" "$next" "$out/kubevision-$next-x86_64.msi"
ls -l "$out"/*.msi

step "a clean prefix: no KubeVision installed"
for code in $(product_codes); do wine msiexec /x "$code" /qn || true; done
rm -rf "$pf" "$pd"
[ -z "$(product_codes)" ] || die "KubeVision is still installed: $(product_codes)"

step "installing $version"
msiexec /i "$(winepath -w "$out/kubevision-$version-x86_64.msi")" "$out/install.log"
show_log "$out/install.log"
for f in kubevision-hmi.exe kubevision.exe cascades/haarcascade_frontalface_default.xml \
  models/dlib_face_recognition_resnet_model_v1.dat models/shape_predictor_5_face_landmarks.dat; do
  [ -f "$pf/$f" ] || die "Program Files\\KubeVision\\$f was not installed"
done
[ -f "$pd/kubevision.toml" ] || die "ProgramData\\KubeVision\\kubevision.toml was not installed"
[ -d "$pd/data" ] || die "ProgramData\\KubeVision\\data was not created"
first=$(product_codes)
[ "$(wc -w <<<"$first")" = 1 ] || die "expected one KubeVision product, found: $first"
grep -aq "RunDoctor" "$out/install.log" || die "the installer did not run kubevision doctor"

kiosk='C:\Program Files\KubeVision\kubevision-hmi.exe'
data='C:\ProgramData\KubeVision\data'
step "the kiosk's store created as at its first start (kubevision-hmi.exe --init-store)"
wine "$kiosk" --init-store --data-dir "$data" 2>&1 | tr -d '\r' | sed 's/^/    /'
[ -f "$pd/data/kubevision.sqlite3" ] || die "kubevision-hmi.exe --init-store made no store"

doctor() { # the installed doctor passes, with the checks that make sense here
  local out
  out=$(wine 'C:\Program Files\KubeVision\kubevision.exe' doctor 2>&1 | tr -d '\r') ||
    { echo "$out" >&2; die "kubevision doctor failed"; }
  echo "$out" | sed 's/^/    /'
  for check in config cascade models store; do
    grep -q "^PASS $check " <<<"$out" || die "kubevision doctor: $check did not pass"
  done
}
step "the installed kubevision.exe doctor"
wine 'C:\Program Files\KubeVision\kubevision.exe' --version | tr -d '\r'
doctor

step "upgrading to $next: configuration and data kept"
echo "# edited by the plant (test-msi.sh)" >>"$pd/kubevision.toml"
echo "kiosk data" >"$pd/data/kept.txt"
msiexec /i "$(winepath -w "$out/kubevision-$next-x86_64.msi")" "$out/upgrade.log"
show_log "$out/upgrade.log"
second=$(product_codes)
[ "$(wc -w <<<"$second")" = 1 ] || die "after the upgrade, expected one KubeVision product, found: $second"
[ "$second" != "$first" ] || die "the upgrade left the product code $first in place"
grep -q "edited by the plant" "$pd/kubevision.toml" || die "the upgrade replaced the edited kubevision.toml"
[ -f "$pd/data/kept.txt" ] || die "the upgrade lost ProgramData\\KubeVision\\data"
[ -f "$pf/kubevision.exe" ] || die "the upgrade left no kubevision.exe"
wine "$kiosk" --verify-audit --data-dir "$data" 2>&1 | tr -d '\r' | sed 's/^/    /' ||
  die "after the upgrade, the kiosk's audit chain does not verify"
doctor

step "removing it: programs gone, ProgramData kept"
msiexec /x "$second" "$out/remove.log"
show_log "$out/remove.log"
[ -z "$(product_codes)" ] || die "KubeVision is still in the installed list: $(product_codes)"
[ ! -e "$pf/kubevision.exe" ] && [ ! -e "$pf/kubevision-hmi.exe" ] || die "the programs are still in Program Files\\KubeVision"
grep -q "edited by the plant" "$pd/kubevision.toml" || die "removal deleted the configuration"
[ -f "$pd/data/kept.txt" ] && [ -f "$pd/data/kubevision.sqlite3" ] || die "removal deleted the kiosk's data"
echo "test-msi: PASSED (install $version, upgrade to $next, removal)"
