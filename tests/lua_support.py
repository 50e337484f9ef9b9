"""Run Argo CD's Lua customizations in a real Lua 5.1 (Argo CD embeds gopher-lua, a Lua 5.1)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from lupa import lua51

from tests.support import ROOT

ARGOCD = ROOT / "integrations" / "argocd" / "secretstage.io" / "SecretStagePromotion"

# Argo CD opens only the base, table and package libraries plus a "safe" os (time, date) for these
# scripts; take the rest away so a script that leans on string/math/io fails here as it would there.
SANDBOX = """
local safe_os = {time = os.time, date = os.date}
string, io, math, debug, coroutine = nil, nil, nil, nil, nil
os = safe_os
package.loaded.os = safe_os
"""


def _to_lua(lua: Any, value: Any) -> Any:
    if isinstance(value, dict):
        return lua.table_from({k: _to_lua(lua, v) for k, v in value.items()})
    if isinstance(value, list):
        return lua.table_from([_to_lua(lua, v) for v in value])
    return value


def _from_lua(value: Any) -> Any:
    if lua51.lua_type(value) == "table":
        items = dict(value.items())
        if items and all(isinstance(k, int) for k in items) and sorted(items) == list(range(1, len(items) + 1)):
            return [_from_lua(items[i]) for i in range(1, len(items) + 1)]
        return {k: _from_lua(v) for k, v in items.items()}
    return value


def run(script: Path | str, obj: dict[str, Any]) -> Any:
    lua = lua51.LuaRuntime(unpack_returned_tuples=True)
    lua.execute(SANDBOX)
    lua.globals().obj = _to_lua(lua, obj)
    source = script.read_text() if isinstance(script, Path) else script
    return _from_lua(lua.execute(source))


def health(obj: dict[str, Any]) -> dict[str, str]:
    return dict(run(ARGOCD / "health.lua", obj))
