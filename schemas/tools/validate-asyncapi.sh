#!/usr/bin/env bash
# Validates schemas/asyncapi.json with the AsyncAPI initiative's own parser
# (its JSON Schema of the spec, the $refs to the committed event schemas
# resolved from disk). The parser comes from npm, pinned, into the
# git-ignored .tools/asyncapi. Called by `make test`.
set -euo pipefail

root=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
dir="$root/.tools/asyncapi"
version="3.6.6"
command -v node >/dev/null 2>&1 || { echo "validate-asyncapi: node is required (Debian: nodejs)" >&2; exit 1; }
if [[ "$(cat "$dir/.version" 2>/dev/null)" != "$version" ]]; then
    echo "validate-asyncapi: installing @asyncapi/parser@$version into $dir"
    mkdir -p "$dir"
    (cd "$dir" && npm install --silent --no-audit --no-fund "@asyncapi/parser@$version" >/dev/null)
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
