#!/usr/bin/env bash
# System packages CI needs from Debian's archive. Idempotent; needs root only when
# something is missing. Debian bookworm (or a derivative with the same package names).
#
#   qemu-user-static  runs aarch64 programs on an x86-64 host: tests/test_aarch64.py runs
#                     the device runtime in an arm64 Debian root under qemu-aarch64-static.
#   mosquitto, mosquitto-clients
#                     a real MQTT broker (and mosquitto_passwd) for tests/test_mqtt.py; the
#                     tests start their own broker on 127.0.0.1 with their own config, the
#                     service itself is not used (no init system needed).
#   openssl           a throwaway CA and server certificate for the mqtts:// test.
#   chromium          a real headless browser for the live view (tests/test_liveview.py)
#                     and the demo's report (tests/test_report.py).
#   systemd           systemd-analyze verify for the unit in docs/raspberry-pi.md
#                     (tests/test_raspberry_pi_doc.py); installing it starts no service.
#
# Installed without recommends, so binfmt-support is not pulled in and nothing is
# registered with the host kernel: the test calls qemu-aarch64-static explicitly.
# The arm64 packages for the test root are fetched by the test itself with a private apt
# state under .cache/aarch64/ (no `dpkg --add-architecture`, the host's dpkg is untouched).
set -euo pipefail

pkgs=(qemu-user-static mosquitto mosquitto-clients openssl chromium systemd)

missing=()
for p in "${pkgs[@]}"; do
  if ! dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed"; then
    missing+=("$p")
  fi
done

if [ "${#missing[@]}" -eq 0 ]; then
  echo "ci-system-deps: already installed: ${pkgs[*]}" >&2
  exit 0
fi
if [ "$(id -u)" -ne 0 ]; then
  echo "ci-system-deps: need root to install: ${missing[*]} (run: sudo $0)" >&2
  exit 1
fi
export DEBIAN_FRONTEND=noninteractive
echo "ci-system-deps: installing ${missing[*]}" >&2
apt-get update -q
apt-get install -y -q --no-install-recommends "${missing[@]}"
echo "ci-system-deps: done" >&2
