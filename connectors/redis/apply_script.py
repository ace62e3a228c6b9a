"""The Lua script that applies a committed checkpoint's Redis writes at most once.

Each split of a job (per sink) has a *fencing token* in Redis, a hash ``{checkpoint, chunk}``: the
last checkpoint (and chunk of it) whose writes were applied. A checkpoint's writes are applied in
chunks of ``chunk_size`` commands, each chunk by one script call, which is atomic in Redis:

1. if the token is at this chunk or later, the call does nothing (a replay after a crash);
2. every command is checked first (the key's type, integers for INCRBY/HINCRBY): Redis does not roll
   a script back, so nothing is written unless the whole chunk can be applied; a failed check
   returns an error naming the command and key;
3. the commands are applied and the token is moved to this chunk, in the same call.

So a chunk is applied exactly once however often a checkpoint is committed again, and never in
part. A reader may see a checkpoint of more than one chunk half applied (chunks are applied one
after the other); ``chunk_size`` is kept in the prepared data, so a replay cuts the same chunks.

The commands are sent as one msgpack array per chunk (``cmsgpack`` is built into Redis' Lua), each
command ``[name, key, ttl_ms or "", *arguments]`` (:mod:`eventapp.connectors.redis.commands`).
Keys other than the token are not declared in ``KEYS``: this works on a single Redis (or a
replicated one); on Redis Cluster every key a split writes would have to share the token's slot.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, Final

import msgpack

from eventapp.errors import SinkError

__all__ = ["APPLY_SCRIPT", "APPLY_UNFENCED_SCRIPT", "PREPARED_VERSION", "decode_prepared", "encode_prepared"]

PREPARED_VERSION: Final = 1

#: Checks and applies a list of commands (``commands``, ``label`` for errors); shared by both scripts.
_CHECK_AND_APPLY: Final = r"""
local kinds = {SET='string', INCRBY='string', HSET='hash', HINCRBY='hash', ZADD='zset', XADD='stream',
               PUBLISH=false, DEL=false, PEXPIRE=false}
local function is_integer(value)
  return value ~= nil and string.match(value, '^%-?%d+$') ~= nil
end
local function fail(i, command, why)
  return redis.error_reply('EVENTAPP command ' .. i .. ' of ' .. label .. ' (' .. command[1] .. ' ' ..
    command[2] .. '): ' .. why)
end
-- Pass 1: check everything; write nothing.
local types, integers = {}, {}
for i, c in ipairs(commands) do
  local name, key = c[1], c[2]
  local kind = kinds[name]
  if kind == nil then
    return fail(i, c, 'unknown command')
  end
  if kind then
    local have = types[key]
    if have == nil then
      have = redis.call('TYPE', key)['ok']
    end
    if have ~= 'none' and have ~= kind then
      return fail(i, c, 'WRONGTYPE the key holds a ' .. have .. ', not a ' .. kind)
    end
    types[key] = kind
    if name == 'SET' then
      integers[key] = is_integer(c[4])
    elseif name == 'INCRBY' then
      local known = integers[key]
      if known == nil and have == 'string' then
        known = is_integer(redis.call('GET', key))
      end
      if known == false then
        return fail(i, c, 'the value is not an integer')
      end
      integers[key] = true
    elseif name == 'HINCRBY' then
      local slot = key .. '\0' .. c[4]
      local known = integers[slot]
      if known == nil and have == 'hash' then
        local value = redis.call('HGET', key, c[4])
        known = value == false or is_integer(value)
      end
      if known == false then
        return fail(i, c, 'the hash field is not an integer')
      end
      integers[slot] = true
    elseif name == 'HSET' then
      for f = 4, #c, 2 do
        integers[key .. '\0' .. c[f]] = is_integer(c[f + 1])
      end
    end
  elseif name == 'DEL' then
    types[key] = 'none'
    integers[key] = nil
  end
end
-- Pass 2: apply, then move the token (atomically with the writes).
for _, c in ipairs(commands) do
  local name, key, ttl = c[1], c[2], c[3]
  if name == 'SET' or name == 'INCRBY' or name == 'PUBLISH' then
    redis.call(name, key, c[4])
  elseif name == 'HSET' or name == 'ZADD' then
    redis.call(name, key, unpack(c, 4))
  elseif name == 'HINCRBY' then
    redis.call('HINCRBY', key, c[4], c[5])
  elseif name == 'XADD' then
    if c[4] ~= '' then
      redis.call('XADD', key, 'MAXLEN', string.sub(c[4], 1, 1), string.sub(c[4], 2), '*', unpack(c, 5))
    else
      redis.call('XADD', key, '*', unpack(c, 5))
    end
  elseif name == 'DEL' then
    redis.call('DEL', key)
  end
  if ttl ~= '' then
    redis.call('PEXPIRE', key, ttl)
  end
end
"""

#: The exactly-once script: ``KEYS[1]`` the token, ``ARGV`` checkpoint id, chunk index, commands.
APPLY_SCRIPT: Final = (
    r"""
local cid = tonumber(ARGV[1])
local chunk = tonumber(ARGV[2])
local token = redis.call('HMGET', KEYS[1], 'checkpoint', 'chunk')
if token[1] then
  local applied, applied_chunk = tonumber(token[1]), tonumber(token[2])
  if applied > cid or (applied == cid and applied_chunk >= chunk) then
    return 0
  end
end
local commands = cmsgpack.unpack(ARGV[3])
local label = 'checkpoint ' .. ARGV[1] .. ' chunk ' .. ARGV[2]
"""
    + _CHECK_AND_APPLY
    + r"""
redis.call('HSET', KEYS[1], 'checkpoint', ARGV[1], 'chunk', ARGV[2])
return 1
"""
)

#: The at-least-once script: ``ARGV[1]`` the commands; checked first and applied, no token.
APPLY_UNFENCED_SCRIPT: Final = (
    r"""
local commands = cmsgpack.unpack(ARGV[1])
local label = 'a batch'
"""
    + _CHECK_AND_APPLY
    + r"""
return 1
"""
)


def encode_prepared(commands: Sequence[list[bytes]], chunk_size: int) -> bytes:
    """A checkpoint's commands as stored with the snapshot: ``[version, chunk_size, commands]``."""
    data: bytes = msgpack.packb([PREPARED_VERSION, chunk_size, list(commands)], use_bin_type=False)
    return data


def decode_prepared(data: bytes, where: str) -> tuple[int, list[list[bytes]]]:
    """``(chunk_size, commands)`` of what :func:`encode_prepared` wrote.

    :raises SinkError: the data is not a version this code reads.
    """
    try:
        decoded: Any = msgpack.unpackb(data, raw=True, use_list=True)
        version, chunk_size, commands = decoded
    except (ValueError, TypeError, msgpack.UnpackException) as exc:
        raise SinkError(f"the prepared Redis writes of {where} cannot be read ({exc})") from exc
    if version != PREPARED_VERSION or not isinstance(chunk_size, int) or chunk_size < 1:
        raise SinkError(
            f"the prepared Redis writes of {where} are of version {version!r}; this eventapp reads "
            f"version {PREPARED_VERSION} (restore with the eventapp version that wrote them)"
        )
    return chunk_size, commands
