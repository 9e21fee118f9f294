#!/usr/bin/env bash
# Installs each SDK from the artifacts of scripts/release.sh into a new, empty project, with
# that ecosystem's own tool only, and evaluates a flag from a bootstrap file:
#
#   Python  pip install vexil-flags into a new venv, from the wheel, then from the sdist
#   Node    npm install @vexil/node (and its platform package) into an empty project
#   Go      go get + go build in a new module, with no CGO_* variable set
#   JVM     a new Maven project depending on dev.vexil:vexil-kotlin
#   .NET    nuget install Vexil into a new folder, compiled and run with Mono
#   Rust    a new Cargo project depending on the packaged crates
#
#   scripts/install-tests.sh DIST [--dev]
#
# --dev: DIST was made by `release.sh --dev`; the sdist is then built with cargo's dev
# profile too.
#
# Nothing of the repository is visible to the projects: each sees its artifacts and the
# public registries. Last line: `N passed, N failed`.
set -uo pipefail

root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cache=${VEXIL_CACHE_DIR:-/var/cache/vexil}
export CARGO_TARGET_DIR=${CARGO_TARGET_DIR:-$cache/target}
dist=$(cd "${1:?usage: install-tests.sh DIST [--dev]}" && pwd)
dev=false
[ "${2:-}" = --dev ] && dev=true
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
version=$(sed -n 's/^version = "\(.*\)"/\1/p' "$root/Cargo.toml" | head -n1)

# The flag every project evaluates: on, serving true to everyone.
ruleset="$work/ruleset.json"
cat >"$ruleset" <<'EOF'
{"version": 1, "flags": [{"key": "checkout", "kind": "bool", "variations": [false, true],
  "on": true, "off_variation": 0, "fallthrough": {"variation": 1}}], "segments": []}
EOF

passed=0
failed=0
# Runs a test in a new empty folder; it must print `checkout=true` last.
check() { # name function
    local name=$1 dir="$work/$1" log="$work/$1.log"
    mkdir -p "$dir"
    # Not in an `if`: `set -e` must stop the test at its first failing step.
    (set -e; cd "$dir"; unset CGO_CFLAGS CGO_LDFLAGS VIRTUAL_ENV; "$2") >"$log" 2>&1
    local status=$?
    # (Maven may leave colour codes on the line the program's output continues.)
    if [ $status -eq 0 ] && [ "$(tail -n1 "$log" | sed 's/\x1b\[[0-9;]*m//g')" = "checkout=true" ]; then
        passed=$((passed + 1))
        echo "ok   install: $name"
    else
        failed=$((failed + 1))
        echo "FAIL install: $name"
        tail -n 30 "$log" | sed 's/^/     /'
    fi
}

python_script() {
    cat >app.py <<EOF
import vexil
with vexil.Client("vxl-server-install", offline=True, bootstrap="$ruleset") as client:
    on = client.bool_variation("checkout", {"kind": "user", "key": "alice"}, False)
print(f"checkout={str(on).lower()}")
EOF
}

python_wheel() {
    python3 -m venv venv
    venv/bin/pip install -q --no-index --find-links "$dist/python" --only-binary vexil-flags vexil-flags
    python_script
    venv/bin/python app.py
}

python_sdist() {
    python3 -m venv venv
    # The build backend (maturin) comes from PyPI, the Rust toolchain from the machine, as the
    # README says. --dev artifacts build the extension with cargo's dev profile here too.
    if $dev; then export MATURIN_PEP517_ARGS="--profile dev"; fi
    # No cache: a wheel built from an earlier sdist of the same version must not stand in.
    venv/bin/pip install -q --no-cache-dir --find-links "$dist/python" --no-binary vexil-flags vexil-flags
    python_script
    venv/bin/python app.py
}

node_project() {
    npm init -y >/dev/null
    npm install --no-audit --no-fund "$dist"/node/vexil-node-linux-x64-gnu-"$version".tgz \
        "$dist/node/vexil-node-$version.tgz"
    cat >app.js <<EOF
const { Client } = require('@vexil/node')
const client = new Client('vxl-server-install', { offline: true, bootstrap: '$ruleset' })
const on = client.boolVariation('checkout', { kind: 'user', key: 'alice' }, false)
client.close().then(() => console.log('checkout=' + on))
EOF
    node app.js
}

go_module() {
    # A module cache of its own (the released zip, not one cached earlier under the same
    # version); other modules come from the shared cache's download folder, a proxy layout.
    export GOMODCACHE="$PWD/modcache" GOFLAGS=-modcacherw
    export GOPROXY="file://$dist/go,file://$cache/go-mod/cache/download,https://proxy.golang.org"
    export GONOSUMDB=github.com/vexil-flags
    go mod init example.com/app
    go get github.com/vexil-flags/vexil/sdk-go@v"$version"
    cat >main.go <<EOF
package main

import (
	"context"
	"fmt"
	"log"

	vexil "github.com/vexil-flags/vexil/sdk-go"
)

func main() {
	client, err := vexil.NewClient(context.Background(), "vxl-server-install",
		vexil.WithOffline(true), vexil.WithBootstrap("$ruleset"))
	if err != nil {
		log.Fatal(err)
	}
	defer client.Close()
	alice, err := vexil.NewContext("user", "alice").Build()
	if err != nil {
		log.Fatal(err)
	}
	defer alice.Close()
	fmt.Printf("checkout=%v\n", client.BoolVariation("checkout", alice, false))
}
EOF
    go build -o app .
    ./app
}

maven_project() {
    local m2="$cache/m2"
    # The released jar, not one cached in the local repository under the same version.
    rm -rf "$m2/dev/vexil"
    mkdir -p src/main/java
    cat >pom.xml <<EOF
<project xmlns="http://maven.apache.org/POM/4.0.0">
  <modelVersion>4.0.0</modelVersion>
  <groupId>com.example</groupId>
  <artifactId>app</artifactId>
  <version>1</version>
  <properties>
    <maven.compiler.release>17</maven.compiler.release>
    <project.build.sourceEncoding>UTF-8</project.build.sourceEncoding>
  </properties>
  <repositories>
    <repository><id>vexil-release</id><url>file://$dist/maven</url></repository>
  </repositories>
  <build>
    <plugins>
      <plugin>
        <groupId>org.apache.maven.plugins</groupId>
        <artifactId>maven-compiler-plugin</artifactId>
        <version>3.13.0</version>
      </plugin>
    </plugins>
  </build>
  <dependencies>
    <dependency>
      <groupId>dev.vexil</groupId>
      <artifactId>vexil-kotlin</artifactId>
      <version>$version</version>
    </dependency>
  </dependencies>
</project>
EOF
    cat >src/main/java/App.java <<EOF
import dev.vexil.Context;
import dev.vexil.VexilClient;
import dev.vexil.VexilOptions;

public class App {
    public static void main(String[] args) throws Exception {
        VexilOptions options = new VexilOptions();
        options.setOffline(true);
        options.setBootstrap("$ruleset");
        try (VexilClient client = new VexilClient("vxl-server-install", options);
             Context alice = Context.builder("user", "alice").build()) {
            System.out.println("checkout=" + client.boolVariation("checkout", alice, false));
        }
    }
}
EOF
    mvn -B -q -Dstyle.color=never -Dmaven.repo.local="$m2" package dependency:build-classpath \
        -Dmdep.outputFile=classpath.txt
    java -cp "target/classes:$(cat classpath.txt)" App
}

nuget_project() {
    nuget install Vexil -Version "$version" -Source "$dist/nuget" -OutputDirectory packages -NoCache -NonInteractive
    local package="packages/Vexil.$version"
    cat >App.cs <<EOF
using System;
using Vexil;

static class App
{
    static void Main()
    {
        using (var client = new VexilClient("vxl-server-install", new ClientOptions { Offline = true, Bootstrap = "$ruleset" }))
        using (var alice = Context.Builder("user", "alice").Build())
        {
            Console.WriteLine("checkout=" + (client.BoolVariation("checkout", alice, false) ? "true" : "false"));
        }
    }
}
EOF
    mkdir -p bin
    cp "$package/lib/netstandard2.0/Vexil.dll" bin/
    # Mono does not read runtimes/<rid>/native (the .NET SDK copies it next to the app).
    cp "$package/runtimes/linux-x64/native/libvexil_ffi.so" bin/
    mcs -nologo -out:bin/App.exe -r:bin/Vexil.dll App.cs
    mono bin/App.exe
}

cargo_project() {
    mkdir -p crates
    # -m: files dated now. cargo package dates every file 2006, and the shared target folder
    # may hold a build of the same relative paths; with the packaged dates it would look
    # current and stand in for the new sources.
    for crate in "$dist"/cargo/*.crate; do tar -xzmf "$crate" -C crates; done
    cargo init -q --bin --name app .
    cat >>Cargo.toml <<EOF
vexil-core = "$version"

# The packaged crates, in place of a registry.
[patch.crates-io]
vexil-core = { path = "crates/vexil-core-$version" }
vexil-engine = { path = "crates/vexil-engine-$version" }
vexil-proto = { path = "crates/vexil-proto-$version" }
EOF
    cat >src/main.rs <<EOF
use vexil_core::{Client, Config, Context, SingleContext};

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let client = Client::new(
        Config::new("vxl-server-install")
            .with_offline(true)
            .with_bootstrap("$ruleset"),
    )?;
    let alice = Context::from(SingleContext::new("user", "alice")?);
    println!("checkout={}", client.bool_variation("checkout", &alice, false));
    client.close();
    Ok(())
}
EOF
    cargo run -q
}

check python-wheel python_wheel
check python-sdist python_sdist
check node node_project
check go go_module
check maven maven_project
check nuget nuget_project
check cargo cargo_project

echo "$passed passed, $failed failed"
[ "$failed" -eq 0 ]
