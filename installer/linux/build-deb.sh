#!/usr/bin/env bash
# Builds target/deb/kubevision_<version>_<arch>.deb from binaries cargo has
# already built: no second compilation. Plain dpkg-deb from a staging tree
# (see installer/README.md for why not cargo-deb); dpkg-shlibdeps computes
# the shared-library dependencies (OpenCV 4.6, libstdc++, …) from the ELF files.
#
#   installer/linux/build-deb.sh [debug|release]     (default: debug)
#
# Prints the path of the package on its last line.
set -euo pipefail

here=$(cd "$(dirname "$0")" && pwd)
repo=$(cd "$here/../.." && pwd)
profile=${1:-debug}
target=${CARGO_TARGET_DIR:-$repo/target}
bin=$target/$profile
out=$target/deb

die() { echo "build-deb: $*" >&2; exit 1; }

for exe in kubevision kubevision-hmi; do
    [ -x "$bin/$exe" ] || die "$bin/$exe is missing: run cargo build --workspace --bins${profile/debug/}${profile/release/ --release} first"
done
version=$("$bin/kubevision" --version | awk '{print $2}')
changelog_version=$(sed -n '1s/^kubevision (\([^)]*\)).*/\1/p' "$here/debian/changelog")
[ "$version" = "$changelog_version" ] ||
    die "the binaries are version $version but debian/changelog's newest entry is $changelog_version: add a changelog entry"
arch=$(dpkg --print-architecture)

stage=$(mktemp -d)
trap 'rm -rf "$stage"' EXIT
root=$stage/root
install -d -m 0755 "$root/DEBIAN"
for exe in kubevision kubevision-hmi; do
    install -D -m 0755 "$bin/$exe" "$root/usr/bin/$exe"
    # Debug symbols stay in target/; the package ships stripped programs.
    strip --strip-unneeded --remove-section=.comment "$root/usr/bin/$exe"
done
install -D -m 0644 "$repo/assets/cascades/haarcascade_frontalface_default.xml" \
    "$root/usr/share/kubevision/cascades/haarcascade_frontalface_default.xml"
# The dlib recogniser's model files (scripts/setup-models put them in the
# models folder; the package ships them so a line PC needs no download).
models=${KUBEVISION_MODELS_DIR:-${XDG_DATA_HOME:-$HOME/.local/share}/kubevision/models}
for f in dlib_face_recognition_resnet_model_v1.dat shape_predictor_5_face_landmarks.dat; do
    [ -f "$models/$f" ] || die "$models/$f is missing: run scripts/setup-models first"
    install -D -m 0644 "$models/$f" "$root/usr/share/kubevision/models/$f"
done
install -D -m 0644 "$here/kubevision.toml" "$root/etc/kubevision/kubevision.toml"
install -D -m 0644 "$here/pam/kubevision-kiosk" "$root/etc/pam.d/kubevision-kiosk"
install -D -m 0644 "$here/systemd/kubevision-kiosk.service" "$root/lib/systemd/system/kubevision-kiosk.service"
install -D -m 0644 "$here/udev/70-kubevision-camera.rules" "$root/lib/udev/rules.d/70-kubevision-camera.rules"
install -D -m 0644 "$here/debian/copyright" "$root/usr/share/doc/kubevision/copyright"
gzip -9n < "$here/debian/changelog" > "$root/usr/share/doc/kubevision/changelog.gz"
chmod 0644 "$root/usr/share/doc/kubevision/changelog.gz"
install -D -m 0644 "$here/debian/lintian-overrides" "$root/usr/share/lintian/overrides/kubevision"
install -m 0755 "$here/debian/postinst" "$here/debian/prerm" "$here/debian/postrm" "$root/DEBIAN/"

(cd "$root" && find etc -type f | sed 's|^|/|' | sort) > "$root/DEBIAN/conffiles"
(cd "$root" && find usr lib -type f -print0 | sort -z | xargs -0 md5sum) > "$root/DEBIAN/md5sums"

# dpkg-shlibdeps wants a debian/control naming the package.
mkdir "$stage/debian"
printf 'Source: kubevision\n\nPackage: kubevision\nArchitecture: any\n' > "$stage/debian/control"
shlibs=$(cd "$stage" && dpkg-shlibdeps -O root/usr/bin/kubevision root/usr/bin/kubevision-hmi | sed -n 's/^shlibs:Depends=//p')
[ -n "$shlibs" ] || die "dpkg-shlibdeps found no dependencies"

# Loaded with dlopen by winit and glutin, so invisible to dpkg-shlibdeps:
# Wayland, keymaps and EGL for the kiosk window under cage.
runtime="libwayland-client0, libwayland-cursor0, libwayland-egl1, libxkbcommon0, libegl1"

cat > "$root/DEBIAN/control" <<CONTROL
Package: kubevision
Version: $version
Architecture: $arch
Maintainer: KubeVision developers <dev@kubevision.example.com>
Installed-Size: $(du -sk --exclude=DEBIAN "$root" | cut -f1)
Depends: $shlibs, $runtime, adduser
Recommends: cage
Section: misc
Priority: optional
Description: face and PIN sign-in kiosk for production-line touchscreens
 KubeVision signs operators in at a production-line touchscreen PC with a
 USB camera: face recognition (LBPH, or dlib's ResNet face embeddings, on the
 kiosk or on an offload service in the plant's Kubernetes cluster) together
 with a PIN or password.
 .
 This package installs the kiosk (kubevision-hmi), started fullscreen on tty1
 at boot by the cage Wayland compositor as the system user kubevision with its
 store in /var/lib/kubevision, and the kubevision tool for plant IT, whose
 "kubevision doctor" checks an installation.
CONTROL

install -d "$out"
deb=$out/kubevision_${version}_${arch}.deb
dpkg-deb --root-owner-group -Zxz --build "$root" "$deb" >&2
echo "$deb"
