#!/usr/bin/env bash
# Validates schemas/asyncapi.json with the AsyncAPI initiative's own parser
# (its JSON Schema of the spec, the $refs to the committed event schemas
# resolved from disk). The parser comes from npm, pinned, into the
# git-ignored .tools/asyncapi. Called by `make test`.
set -euo pipefail

root=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
dir="$root/.tools/asyncapi"
version="3.6.6"
# shellcheck source=deploy/local/debian.sh
source "$root/deploy/local/debian.sh"
fail() { echo "validate-asyncapi: $*" >&2; exit 1; }
npm=(npm)
if ! command -v node >/dev/null 2>&1; then
    debian_install nodejs npm || fail "Node.js missing and could not be installed"
elif ! command -v npm >/dev/null 2>&1; then
    # A Node.js without npm (seen: nodesource's package with npm taken out,
    # which Debian's npm package conflicts with): npm's own tarball from the
    # npm registry, pinned and checked, run by this node.
    npm_version="10.9.2"
    npm_sha256="5cd1e5ab971ea6333f910bc2d50700167c5ef4e66da279b2a3efc874c6b116e4"
    npm_dir="$root/.tools/npm-$npm_version"
    if [ ! -f "$npm_dir/package/bin/npm-cli.js" ]; then
        echo "validate-asyncapi: fetching npm $npm_version from the npm registry"
        mkdir -p "$npm_dir"
        curl -fsSL -o "$npm_dir/npm.tgz" "https://registry.npmjs.org/npm/-/npm-$npm_version.tgz" ||
            fail "npm missing and its tarball could not be fetched"
        [ "$(sha256sum "$npm_dir/npm.tgz" | cut -d' ' -f1)" = "$npm_sha256" ] ||
            fail "npm $npm_version tarball: unexpected sha256"
        tar -xzf "$npm_dir/npm.tgz" -C "$npm_dir"
    fi
    npm=(node "$npm_dir/package/bin/npm-cli.js")
fi
if [[ "$(cat "$dir/.version" 2>/dev/null)" != "$version" ]]; then
    echo "validate-asyncapi: installing @asyncapi/parser@$version into $dir"
    mkdir -p "$dir"
    (cd "$dir" && "${npm[@]}" install --silent --no-audit --no-fund "@asyncapi/parser@$version" >/dev/null)
    echo "$version" > "$dir/.version"
fi
cat > "$dir/validate.mjs" <<'JS'
import { Parser, fromFile } from '@asyncapi/parser';
const { document, diagnostics } = await fromFile(new Parser(), process.argv[2]).parse();
const errors = diagnostics.filter((d) => d.severity === 0);
for (const d of errors) console.error(`error ${d.code}: ${d.message} at ${JSON.stringify(d.path)}`);
if (!document || errors.length) process.exit(1);
console.log(`ok   ${process.argv[2]} (AsyncAPI ${document.version()})`);
JS
node "$dir/validate.mjs" "$root/schemas/asyncapi.json"
