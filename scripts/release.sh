#!/usr/bin/env bash
# Builds every installable artifact of the SDKs, for the platform this runs on, into one
# folder (RELEASING.md lists what a release covers on the other platforms):
#
#   cargo/   the Rust crates (cargo package): vexil-engine, vexil-proto, vexil-core,
#            vexil-openfeature
#   python/  an abi3 wheel (CPython 3.10 and later) and the sdist
#   node/    @vexil/node and @vexil/node-<platform>, wired through optionalDependencies
#   go/      the Go module in a GOPROXY folder's layout, with the header and the static
#            library inside
#   maven/   dev.vexil:vexil-kotlin in a Maven repository folder, the JNI library in the jar
#   nuget/   the Vexil NuGet package, the C ABI library under runtimes/<rid>/native
#
#   scripts/release.sh [--out DIR] [--dev]
#
# --dev builds the native code with cargo's dev profile instead of release: the same
# packaging, quicker, reusing the test command's build (scripts/install-tests.sh uses it).
# Default DIR: dist/ at the repository's root.
set -euo pipefail

root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cache=${VEXIL_CACHE_DIR:-/var/cache/vexil}
export CARGO_TARGET_DIR=${CARGO_TARGET_DIR:-$cache/target}
out="$root/dist"
dev=false
while [ $# -gt 0 ]; do
    case "$1" in
        --out) out=$2; shift 2 ;;
        --dev) dev=true; shift ;;
        *) echo "release.sh: unknown argument $1 (--out DIR, --dev)" >&2; exit 2 ;;
    esac
done
mkdir -p "$out"
out=$(cd "$out" && pwd)
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT

if $dev; then
    cargo_profile=(); profile_dir=debug; maturin_profile=(--profile dev); napi_profile=()
else
    cargo_profile=(--release); profile_dir=release; maturin_profile=(--release); napi_profile=(--release)
fi
version=$(sed -n 's/^version = "\(.*\)"/\1/p' "$root/Cargo.toml" | head -n1)
step() { echo "== release: $*" >&2; }

# The platform names each ecosystem uses for this machine.
case "$(uname -s)-$(uname -m)" in
    Linux-x86_64) go_platform=linux_amd64; node_platform=linux-x64-gnu; jvm_platform=linux-x86_64
        dotnet_rid=linux-x64; node_os=linux; node_cpu=x64 ;;
    *) echo "release.sh: $(uname -s) $(uname -m) is not a platform this script packages yet (RELEASING.md)" >&2
        exit 1 ;;
esac

# A native library without its debug sections: what users download.
stripped() { # source destination
    mkdir -p "$(dirname "$2")"
    strip --strip-debug -o "$2" "$1"
}

step "native libraries ($profile_dir)"
(cd "$root" && cargo build -q "${cargo_profile[@]}" -p vexil-ffi -p vexil-jni)

step "Rust crates"
rm -rf "$out/cargo" && mkdir -p "$out/cargo"
(cd "$root" && cargo package -q --no-verify --allow-dirty \
    -p vexil-engine -p vexil-proto -p vexil-core -p vexil-openfeature)
cp "$CARGO_TARGET_DIR"/package/vexil-{engine,proto,core,openfeature}-"$version".crate "$out/cargo/"

step "Python wheel and sdist"
tools="$cache/venv-release"
if [ ! -x "$tools/bin/maturin" ]; then
    python3 -m venv "$tools"
    "$tools/bin/pip" install -q "maturin>=1.9.4,<2"
fi
rm -rf "$out/python" && mkdir -p "$out/python"
"$tools/bin/maturin" build -q "${maturin_profile[@]}" -m "$root/sdk-python/Cargo.toml" --out "$out/python" >&2
"$tools/bin/maturin" sdist -m "$root/sdk-python/Cargo.toml" --out "$out/python" >&2

step "Node packages"
rm -rf "$out/node" && mkdir -p "$out/node"
(
    cd "$root/sdk-node"
    [ -d node_modules ] || npm ci --no-audit --no-fund >&2
    node_modules/.bin/napi build --platform "${napi_profile[@]}" --js index.js --dts index.d.ts >&2
    # The platform package: the addon alone, installed by npm only where it runs.
    platform="$work/node-$node_platform"
    mkdir -p "$platform"
    cp "vexil.$node_platform.node" README.md "$platform/"
    node -e '
        const [dir, name, version, os, cpu, file] = process.argv.slice(1)
        const fs = require("fs")
        fs.writeFileSync(`${dir}/package.json`, JSON.stringify({
          name, version, description: "The native addon of @vexil/node for " + os + "-" + cpu,
          license: "Apache-2.0", repository: "https://github.com/vexil-flags/vexil",
          os: [os], cpu: [cpu], libc: ["glibc"], main: file, files: [file, "README.md"],
          engines: { node: ">= 20" },
        }, null, 2) + "\n")
    ' "$platform" "@vexil/node-$node_platform" "$version" "$node_os" "$node_cpu" "vexil.$node_platform.node"
    # The main package: JavaScript and types, the addon through optionalDependencies.
    main="$work/node-main"
    mkdir -p "$main"
    node -e '
        const [dir, platformPackage] = process.argv.slice(1)
        const fs = require("fs"), path = require("path")
        const pkg = JSON.parse(fs.readFileSync("package.json", "utf8"))
        pkg.files = pkg.files.filter((f) => !f.endsWith(".node"))
        for (const f of pkg.files) fs.cpSync(f, path.join(dir, f), { recursive: true })
        pkg.optionalDependencies = { [platformPackage]: pkg.version }
        delete pkg.devDependencies
        delete pkg.scripts
        fs.writeFileSync(path.join(dir, "package.json"), JSON.stringify(pkg, null, 2) + "\n")
    ' "$main" "@vexil/node-$node_platform"
    npm pack -q --pack-destination "$out/node" "$platform" "$main" >/dev/null
)

step "Go module"
module=$(sed -n 's/^module //p' "$root/sdk-go/go.mod")
gover="v$version"
rm -rf "$out/go" && mkdir -p "$out/go/$module/@v"
staged="$work/go/$module@$gover"
mkdir -p "$staged"
# The module's tracked files, without the testee (a module of its own).
(cd "$root/sdk-go" && git ls-files | grep -v '^testee/' | while read -r f; do
    mkdir -p "$staged/$(dirname "$f")" && cp "$f" "$staged/$f"
done)
stripped "$CARGO_TARGET_DIR/$profile_dir/libvexil_ffi.a" "$staged/lib/$go_platform/libvexil_ffi.a"
(cd "$work/go" && python3 - "$module@$gover" "$out/go/$module/@v/$gover.zip" <<'PY'
import os, sys, zipfile
prefix, target = sys.argv[1], sys.argv[2]
with zipfile.ZipFile(target, "w", zipfile.ZIP_DEFLATED) as z:
    for base, _, files in os.walk(prefix):
        for name in sorted(files):
            z.write(os.path.join(base, name))
PY
)
cp "$root/sdk-go/go.mod" "$out/go/$module/@v/$gover.mod"
printf '{"Version":"%s","Time":"%s"}\n' "$gover" "$(date -u +%Y-%m-%dT%H:%M:%SZ)" >"$out/go/$module/@v/$gover.info"
echo "$gover" >"$out/go/$module/@v/list"

step "JVM jar"
m2="$cache/m2"
rm -rf "$out/maven" && mkdir -p "$out/maven"
(
    cd "$root/sdk-kotlin"
    mvn -B -q -Dstyle.color=never -Dmaven.repo.local="$m2" -DskipTests package >&2
    jar_file="target/vexil-kotlin-$version.jar"
    stripped "$CARGO_TARGET_DIR/$profile_dir/libvexil_jni.so" "$work/jvm/dev/vexil/native/$jvm_platform/libvexil_jni.so"
    jar uf "$jar_file" -C "$work/jvm" dev
    mvn -B -q -Dstyle.color=never -Dmaven.repo.local="$m2" deploy:deploy-file \
        -Dfile="$jar_file" -DpomFile=pom.xml -Durl="file://$out/maven" -DrepositoryId=local >&2
)

step "NuGet package"
if ! command -v mcs >/dev/null 2>&1 || ! command -v nuget >/dev/null 2>&1; then
    (apt-get update -q && DEBIAN_FRONTEND=noninteractive apt-get install -y -q mono-devel nuget) >&2
fi
rm -rf "$out/nuget" && mkdir -p "$out/nuget"
package="$work/nuget"
mkdir -p "$package/lib/netstandard2.0"
mcs -langversion:7 -unsafe -nologo -optimize+ -warnaserror+ -target:library \
    -doc:"$package/lib/netstandard2.0/Vexil.xml" -out:"$package/lib/netstandard2.0/Vexil.dll" \
    "$root"/sdk-dotnet/src/Vexil/*.cs
stripped "$CARGO_TARGET_DIR/$profile_dir/libvexil_ffi.so" "$package/runtimes/$dotnet_rid/native/libvexil_ffi.so"
cp "$root/sdk-dotnet/README.md" "$package/"
cat >"$package/Vexil.nuspec" <<EOF
<?xml version="1.0" encoding="utf-8"?>
<package xmlns="http://schemas.microsoft.com/packaging/2013/05/nuspec.xsd">
  <metadata>
    <id>Vexil</id>
    <version>$version</version>
    <authors>The Vexil authors</authors>
    <description>Vexil feature flags and experiments for .NET, over the Rust SDK core's C ABI.</description>
    <licenseUrl>https://www.apache.org/licenses/LICENSE-2.0</licenseUrl>
    <projectUrl>https://github.com/vexil-flags/vexil</projectUrl>
    <dependencies>
      <group targetFramework=".NETStandard2.0" />
    </dependencies>
  </metadata>
  <files>
    <file src="lib/**" target="lib" />
    <file src="runtimes/**" target="runtimes" />
    <file src="README.md" target="" />
  </files>
</package>
EOF
nuget pack "$package/Vexil.nuspec" -BasePath "$package" -OutputDirectory "$out/nuget" -NoPackageAnalysis >&2

step "done: $out"
(cd "$out" && find . -type f \( -name '*.crate' -o -name '*.whl' -o -name '*.tar.gz' -o -name '*.tgz' \
    -o -name '*.zip' -o -name '*.jar' -o -name '*.nupkg' \) | sort)
