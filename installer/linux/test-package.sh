#!/usr/bin/env bash
# Package test, run by scripts/test after `cargo build --workspace --bins`:
#  1. build the .deb from target/debug (build-deb.sh) and run lintian on it;
#  2. install it with apt into a clean Debian 12 root (debootstrap minbase),
#     check the user, the data directory, the unit, `kubevision --version`,
#     that neither the Depends nor ldd name OpenCV, dlib or a BLAS, and
#     `kubevision doctor` there;
#  3. upgrade to a version-bumped copy: the data and an edited conffile stay;
#  4. purge: the data, the configuration and the user are gone.
# The bare root and the downloaded packages are cached in .cache/installer/
# (delete it for a cold run). Needs root (chroot) and deb.debian.org.
set -euo pipefail

here=$(cd "$(dirname "$0")" && pwd)
repo=$(cd "$here/../.." && pwd)
cache=$repo/.cache/installer
mirror=${DEBIAN_MIRROR:-http://deb.debian.org/debian}
suite=bookworm
base=$cache/$suite-minbase.tar

step() { printf '\n== %s\n' "$*"; }
die() { echo "test-package: FAILED: $*" >&2; exit 1; }

[ "$(id -u)" = 0 ] || die "needs root (debootstrap, chroot)"
missing=()
for tool in dpkg-shlibdeps:dpkg-dev lintian:lintian debootstrap:debootstrap; do
    command -v "${tool%%:*}" >/dev/null || missing+=("${tool#*:}")
done
if [ ${#missing[@]} -gt 0 ]; then
    step "installing ${missing[*]}"
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi

step "building the package"
deb=$("$here/build-deb.sh" debug | tail -n 1)
version=$(dpkg-deb -f "$deb" Version)
echo "$deb"

step "lintian (allowed tags: installer/linux/debian/lintian-overrides)"
# spelling-error-in-binary is left out: it reports words inside the
# dependencies' strings and symbol names ("ment", "Unitialized"), and which
# of them a build contains changes with the toolchain and the build cache.
lintian -I --suppress-tags spelling-error-in-binary --fail-on error,warning,info "$deb"

work=$(mktemp -d /tmp/kubevision-package-test.XXXXXX)
root=$work/root
cleanup() {
    for mount in "$root/dev/pts" "$root/proc"; do
        if mountpoint -q "$mount"; then umount "$mount"; fi
    done
    # --one-file-system: never follow a mount that failed to come off.
    rm -rf --one-file-system "$work"
}
trap cleanup EXIT

mkdir -p "$cache/archives" "$root"
if [ -f "$base" ]; then
    step "unpacking the cached $suite root"
    tar -xpf "$base" -C "$root"
else
    step "debootstrap --variant=minbase $suite (cached for later runs in $base)"
    debootstrap --variant=minbase "$suite" "$root" "$mirror" >"$work/debootstrap.log" ||
        { tail -n 30 "$work/debootstrap.log"; die "debootstrap"; }
    rm -f "$root"/var/cache/apt/archives/*.deb
    tar -cpf "$base.tmp" -C "$root" . && mv "$base.tmp" "$base"
fi
mount -t proc proc "$root/proc"
mount -t devpts -o newinstance,ptmxmode=0666 devpts "$root/dev/pts"
cp /etc/resolv.conf "$root/etc/resolv.conf"
# Services are not started inside a chroot.
printf '#!/bin/sh\nexit 101\n' >"$root/usr/sbin/policy-rc.d"
chmod 755 "$root/usr/sbin/policy-rc.d"
find "$cache/archives" -name '*.deb' -exec cp -t "$root/var/cache/apt/archives/" {} +

in_root() {
    chroot "$root" /usr/bin/env -i PATH=/usr/sbin:/usr/bin:/sbin:/bin LANG=C.UTF-8 \
        DEBIAN_FRONTEND=noninteractive "$@"
}
# Runs the doctor in the root; its output is kept in $work/doctor.out.
doctor() {
    in_root kubevision doctor "$@" | tee "$work/doctor.out" ||
        die "kubevision doctor failed in the installed root"
}
expect_line() {
    grep -qE "$1" "$work/doctor.out" || die "no line matching '$1' in the doctor's output"
}

step "apt-get install ./$(basename "$deb") into the clean root"
cp "$deb" "$root/tmp/"
in_root apt-get update -qq
in_root apt-get install -y -q "/tmp/$(basename "$deb")" | tee "$work/install.log" | grep -vE '^(Get|Selecting|Preparing|Unpacking|Setting up|Processing)' || true
grep -q "^Setting up kubevision ($version)" "$work/install.log" || die "apt did not set up kubevision"
find "$root/var/cache/apt/archives" -maxdepth 1 -name '*.deb' -exec cp -n -t "$cache/archives/" {} +

step "the installed package"
[ "$(in_root kubevision --version)" = "kubevision $version" ] || die "kubevision --version"
in_root kubevision --version
grep -q "^PASS store" "$work/install.log" || die "postinst did not leave a store that passes the doctor"
in_root getent passwd kubevision >/dev/null || die "no user kubevision"
in_root id -nG kubevision | grep -qw video || die "kubevision is not in group video"
[ "$(in_root stat -c '%U:%G %a' /var/lib/kubevision)" = "kubevision:kubevision 750" ] || die "/var/lib/kubevision ownership or mode"
[ "$(in_root stat -c %U /var/lib/kubevision/kubevision.sqlite3)" = kubevision ] || die "the store is not the kiosk user's"
[ -L "$root/etc/systemd/system/graphical.target.wants/kubevision-kiosk.service" ] || die "kubevision-kiosk.service is not enabled"
[ -x "$root/usr/bin/cage" ] || die "cage (Recommends) is not installed"
[ -f "$root/lib/udev/rules.d/70-kubevision-camera.rules" ] || die "no udev rule"

step "neither OpenCV nor dlib: the package's Depends, what apt installed, ldd"
depends=$(dpkg-deb -f "$deb" Depends)
echo "Depends: $depends"
if grep -qiE 'opencv|dlib|blas|lapack' <<<"$depends"; then die "Depends names OpenCV, dlib or a BLAS: $depends"; fi
if in_root dpkg-query -W -f '${Package}\n' | grep -iE 'opencv|dlib|blas|lapack'; then
    die "installing the package brought OpenCV, dlib or a BLAS into the clean root"
fi
for bin in kubevision kubevision-hmi; do
    in_root ldd "/usr/bin/$bin" >"$work/ldd.$bin" || die "ldd /usr/bin/$bin"
    if grep -iE 'opencv|dlib|blas|lapack|not found' "$work/ldd.$bin"; then die "/usr/bin/$bin links OpenCV, dlib or a BLAS, or misses a library"; fi
    echo "/usr/bin/$bin: $(wc -l <"$work/ldd.$bin") libraries, none of OpenCV, dlib or a BLAS"
done

step "kubevision doctor in the root"
doctor
expect_line '^PASS config +/etc/kubevision/kubevision.toml$'
expect_line '^PASS cascade +/usr/share/kubevision/cascades/haarcascade_frontalface_default.xml$'
expect_line '^PASS models +/usr/share/kubevision/models$'
expect_line '^PASS store +/var/lib/kubevision/kubevision.sqlite3 \(schema version [0-9]+\)$'
expect_line '^(WARN|PASS) camera '
expect_line '^SKIP opcua +off in the kiosk'\''s settings$'
in_root kubevision doctor --require-camera >/dev/null && die "--require-camera passed in a root without cameras"

step "upgrade to $version+1 keeps the data and an edited configuration"
echo "kept across upgrades" >"$root/var/lib/kubevision/marker"
echo "# edited by the plant" >>"$root/etc/kubevision/kubevision.toml"
mkdir "$work/bump"
dpkg-deb -R "$deb" "$work/bump/pkg"
sed -i "s/^Version: .*/Version: $version+1/" "$work/bump/pkg/DEBIAN/control"
dpkg-deb --root-owner-group -Znone -b "$work/bump/pkg" "$root/tmp/kubevision-upgrade.deb" >/dev/null
in_root apt-get install -y -q /tmp/kubevision-upgrade.deb >"$work/upgrade.log" || { cat "$work/upgrade.log"; die "upgrade"; }
[ "$(in_root dpkg-query -W -f '${Version}' kubevision)" = "$version+1" ] || die "the upgrade did not install $version+1"
grep -qx "kept across upgrades" "$root/var/lib/kubevision/marker" || die "the upgrade lost /var/lib/kubevision"
grep -qx "# edited by the plant" "$root/etc/kubevision/kubevision.toml" || die "the upgrade overwrote the edited configuration"
doctor >/dev/null
expect_line '^PASS store '

step "purge removes the data, the configuration and the user"
in_root apt-get purge -y -q kubevision >"$work/purge.log" || { cat "$work/purge.log"; die "purge"; }
[ ! -e "$root/var/lib/kubevision" ] || die "/var/lib/kubevision is still there after purge"
[ ! -e "$root/etc/kubevision" ] || die "/etc/kubevision is still there after purge"
in_root getent passwd kubevision >/dev/null && die "user kubevision is still there after purge"
[ ! -e "$root/etc/systemd/system/graphical.target.wants/kubevision-kiosk.service" ] || die "the unit is still enabled after purge"

step "package test passed"
