"""The ledger's two Lua scripts, `APPLY` (one event) and `SWAP` (the end of a rebuild).

The scripts name their keys: each starts with the tables `live` (the ledger's keys and
bucket stems) and, for `SWAP`, `building` (the temporary keys of a rebuild) and `retired`
(the keys of formats 1 and 2, removed), generated from the fields of `LedgerKeys`,
`LedgerBuildingKeys` and `RetiredLedgerKeys`. The same field order builds the KEYS list
passed in (`apply_keys`, `swap_keys`), so the scripts and the caller cannot disagree on it.

A bucket's key is its stem, `:`, and the ID without its last two digits, so the scripts
derive it from the ID (the bucket of an invoice's old customer is only known inside the
script). Those keys are not in KEYS: a single Redis server accepts that (Upstash too: its
default script lock is global), a Redis Cluster or a server enforcing declared keys
(Dragonfly by default) would not; the service supports neither (`docs/guide.md`).

`change(invoice, new)` sets the invoice's entry (`customer|cents|day`, or "d" to delete)
and keeps every count exact; it returns the outcome. Cents go to INCRBY/DECRBY as the
strings they are in the entry: a Lua number would be a double, printed with 14 significant
digits. Day numbers (five digits) and counts are far inside a double's exact integers.

The growth history is kept the same way: each customer's value holds its invoice count and
the days of its dated invoices (`n|day,day=k`, sorted; a few for most customers), so its
first day is always known, also after its earliest invoice goes; `first_day_numbers`
counts the customers whose first invoice is on each day.
"""

from __future__ import annotations

from dataclasses import fields
from typing import Final

from simpro_counter.keys import LedgerBuildingKeys, LedgerKeys, RetiredLedgerKeys
from simpro_counter.store.ledger.encoding import LEDGER_FORMAT, SHORT_VALUE_BYTES

# KEYS order: the live keys first, then (SWAP only) the rebuild's keys and the retired ones.
_LIVE: Final = tuple(field.name for field in fields(LedgerKeys))
_BUILDING: Final = tuple(field.name for field in fields(LedgerBuildingKeys))
_RETIRED: Final = tuple(field.name for field in fields(RetiredLedgerKeys))


def apply_keys(keys: LedgerKeys) -> list[str]:
    """KEYS for `APPLY`: the live keys in the order the script's `live` table reads them."""
    return [getattr(keys, name) for name in _LIVE]


def swap_keys(keys: LedgerKeys, building: LedgerBuildingKeys) -> list[str]:
    """KEYS for `SWAP`: the live keys, the rebuild's temporary ones, the retired ones."""
    retired = keys.retired
    return [
        *apply_keys(keys),
        *(getattr(building, name) for name in _BUILDING),
        *(getattr(retired, name) for name in _RETIRED),
    ]


def _lua_table(variable: str, names: tuple[str, ...], first: int) -> str:
    """`local <variable> = {name = KEYS[first], ...}`: the keys by name, in KEYS order."""
    entries = ", ".join(f"{name} = KEYS[{first + i}]" for i, name in enumerate(names))
    return f"local {variable} = {{{entries}}}\n"


_CHANGE = (
    f"local short_value, ledger_format = {SHORT_VALUE_BYTES}, '{LEDGER_FORMAT}'\n"
    + """
-- (key, field, bucket) of the ID `id` (a decimal string) under `stem`: the ID without its
-- last two digits, and those digits (keys.bucket_slot, its Python twin), so any ID is exact.
local function slot(stem, id)
    local bucket, field = '0', id
    if #id > 2 then
        bucket, field = string.sub(id, 1, -3), string.sub(id, -2)
        if string.sub(field, 1, 1) == '0' then field = string.sub(field, 2) end
    end
    return stem .. ':' .. bucket, field, bucket
end

-- A customer's value (`n|days`) and where it is: 'short' (its bucket) or 'long'.
local function read_customer(customer)
    local key, field = slot(live.customer_bucket, customer)
    local value = redis.call('HGET', key, field)
    if value then return value, 'short' end
    value = redis.call('HGET', live.customer_long, customer)
    if value then return value, 'long' end
    return nil, nil
end

-- Store `value` (nil: remove) where it fits, and remove it from where it was.
local function write_customer(customer, value, was)
    local key, field, bucket = slot(live.customer_bucket, customer)
    local now = nil
    if value then
        now = (#value <= short_value) and 'short' or 'long'
        if now == 'short' then
            redis.call('HSET', key, field, value)
            redis.call('SADD', live.customer_buckets, bucket)
        else
            redis.call('HSET', live.customer_long, customer, value)
        end
    end
    if was and was ~= now then
        if was == 'short' then
            redis.call('HDEL', key, field)
        else
            redis.call('HDEL', live.customer_long, customer)
        end
    end
end

local function first_of(days)
    return string.match(days, '^(%-?%d+)')
end

local function move_first(from, to)
    if from == to then return end
    if from and redis.call('HINCRBY', live.first_day_numbers, from, -1) <= 0 then
        redis.call('HDEL', live.first_day_numbers, from)
    end
    if to then redis.call('HINCRBY', live.first_day_numbers, to, 1) end
end

local function day_item(day, n)
    if n == 1 then return tostring(day) end
    return day .. '=' .. n
end

-- The sorted list `days` with `delta` (1 or -1) invoices more on `day` (a number). Only
-- the item that changes is rewritten; the rest is copied as it is, and a new latest day
-- (the usual new invoice) is appended without a search.
local function count_day(days, day, delta)
    if days == '' then
        if delta > 0 then return day_item(day, 1) end
        return days
    end
    local i = #days  -- the last item starts after the last comma (44)
    while i > 0 and string.byte(days, i) ~= 44 do i = i - 1 end
    local last = tonumber(string.match(days, '^%-?%d+', i + 1))
    if day > last then
        if delta > 0 then return days .. ',' .. day_item(day, 1) end
        return days
    end
    for start, d, n in string.gmatch(days, '()(%-?%d+)=?(%d*)') do
        d = tonumber(d)
        if d >= day then
            local before = string.sub(days, 1, start - 1)  -- '' or ends with ','
            if d > day then  -- not in the list
                if delta < 0 then return days end
                return before .. day_item(day, 1) .. ',' .. string.sub(days, start)
            end
            local comma = string.find(days, ',', start, true)
            local after = comma and string.sub(days, comma) or ''  -- '' or starts with ','
            n = (tonumber(n) or 1) + delta
            if n > 0 then return before .. day_item(d, n) .. after end
            if before == '' then return string.sub(after, 2) end
            return string.sub(before, 1, -2) .. after
        end
    end
    return days
end

-- Add `delta` (1 or -1) invoices of `customer` dated `day` ('' when undated).
local function count_customer(customer, day, delta)
    local old, was = read_customer(customer)
    local n, old_days = 0, ''
    if old then
        n, old_days = string.match(old, '^(%d+)|(.*)$')
        n = tonumber(n)
    end
    local days = old_days
    if day ~= '' then days = count_day(old_days, tonumber(day), delta) end
    n = n + delta
    if n > 0 then
        write_customer(customer, n .. '|' .. days, was)
        if n == 1 and delta > 0 then redis.call('INCR', live.customers) end
    else
        write_customer(customer, nil, was)
        redis.call('DECR', live.customers)
    end
    move_first(first_of(old_days), first_of(days))
end

local function change(inv, new)
    local key, field, bucket = slot(live.entry_bucket, inv)
    local old = redis.call('HGET', key, field)
    if new == 'd' then
        if not old then return 'unchanged' end
    elseif old == new then
        return 'unchanged'
    end
    if old then
        local customer, cents, day = string.match(old, '^([^|]*)|([^|]*)|(.*)$')
        if customer ~= '' then count_customer(customer, day, -1) end
        redis.call('DECRBY', live.revenue_cents, cents)
        redis.call('DECR', live.invoices)
    end
    if new == 'd' then
        redis.call('HDEL', key, field)
        return 'deleted'
    end
    local customer, cents, day = string.match(new, '^([^|]*)|([^|]*)|(.*)$')
    if customer ~= '' then count_customer(customer, day, 1) end
    redis.call('HSET', key, field, new)
    redis.call('SADD', live.entry_buckets, bucket)
    redis.call('INCRBY', live.revenue_cents, cents)
    redis.call('INCR', live.invoices)
    if old then return 'updated' end
    return 'created'
end

local function journal(entry, cap)
    redis.call('RPUSH', live.journal, entry)
    redis.call('LTRIM', live.journal, -cap, -1)
end

local function counts()
    local c = redis.call('MGET', live.customers, live.invoices, live.revenue_cents, live.version)
    return {c[1] or '0', c[2] or '0', c[3] or '0', c[4] or '0'}
end
"""
)

# ARGV: invoice, new entry ("d" delete), journal cap.
# Returns {outcome, customers, invoices, revenue_cents, version}.
APPLY: Final = (
    _lua_table("live", _LIVE, 1)
    + _CHANGE
    + """
local invoice, new_entry, journal_cap = ARGV[1], ARGV[2], tonumber(ARGV[3])
local outcome = change(invoice, new_entry)
-- Until a rebuild has written this format the ledger is partial (new, or in format 2): an
-- event it finds 'unchanged' (a delete of an invoice it does not have) may still change
-- what a running scan saw, so it is journaled for that scan's replay too.
if outcome ~= 'unchanged' or redis.call('GET', live.format) ~= ledger_format then
    local version = redis.call('INCR', live.version)
    journal(version .. ':' .. invoice .. ':' .. new_entry, journal_cap)
end
local c = counts()
return {outcome, c[1], c[2], c[3], c[4]}
"""
)

# `building`: the rebuild's buckets (listed in its two index sets), its long customers and
# first days (any may not exist, e.g. when the scan found no invoices); `retired`: the keys
# of formats 1 and 2, removed (the upgrade in place). ARGV: customers, invoices, revenue
# cents, journal_from ("" = no replay), journal cap. Every version is journaled (events and
# the rebuild marker `<version>:rebuild`), so consecutive versions prove that nothing was
# trimmed.
# Returns {'gap', oldest journaled version} without touching anything, or
# {'swapped', customers, invoices, revenue_cents, version, replayed}.
SWAP: Final = (
    _lua_table("live", _LIVE, 1)
    + _lua_table("building", _BUILDING, len(_LIVE) + 1)
    + _lua_table("retired", _RETIRED, len(_LIVE) + len(_BUILDING) + 1)
    + _CHANGE
    + """
local customers, invoices, revenue_cents = ARGV[1], ARGV[2], ARGV[3]
local journal_from, journal_cap = ARGV[4], tonumber(ARGV[5])
local entries = {}
if journal_from ~= '' then
    local from = tonumber(journal_from)
    local current = tonumber(redis.call('GET', live.version)) or 0
    if current > from then
        local all = redis.call('LRANGE', live.journal, 0, -1)
        local oldest = all[1] and tonumber(string.match(all[1], '^%d+'))
        if not oldest or oldest > from + 1 then
            return {'gap', oldest or 0}
        end
        for i = 1, #all do
            if tonumber(string.match(all[i], '^%d+')) > from then
                entries[#entries + 1] = all[i]
            end
        end
    end
end
-- UNLINK frees the old keys in the background; RENAME over them would free them here,
-- holding Redis (and this client's short timeout) for longer.
for _, stem in ipairs({'entry', 'customer'}) do
    local index, bucket_stem = stem .. '_buckets', stem .. '_bucket'
    for _, bucket in ipairs(redis.call('SMEMBERS', live[index])) do
        redis.call('UNLINK', live[bucket_stem] .. ':' .. bucket)
    end
    for _, bucket in ipairs(redis.call('SMEMBERS', building[index])) do
        local built_key = building[bucket_stem] .. ':' .. bucket
        if redis.call('EXISTS', built_key) == 1 then
            local live_key = live[bucket_stem] .. ':' .. bucket
            redis.call('RENAME', built_key, live_key)
            redis.call('PERSIST', live_key)
        end
    end
end
local singles = {'customer_long', 'first_day_numbers', 'entry_buckets', 'customer_buckets'}
for _, name in ipairs(singles) do
    redis.call('UNLINK', live[name])
    if redis.call('EXISTS', building[name]) == 1 then
        redis.call('RENAME', building[name], live[name])
        redis.call('PERSIST', live[name])
    end
end
for _, key in pairs(retired) do
    redis.call('UNLINK', key)
end
redis.call('SET', live.format, ledger_format)
redis.call('SET', live.customers, customers)
redis.call('SET', live.invoices, invoices)
redis.call('SET', live.revenue_cents, revenue_cents)
local replayed = 0
for _, entry in ipairs(entries) do
    local inv, new = string.match(entry, '^%d+:(%-?%d+):(.*)$')
    -- Skips the rebuild marker and entries of another format (format 1's customer alone,
    -- format 2's ISO dates, left in the journal by an earlier version): failing here
    -- would leave the swap half done.
    if inv and (new == 'd' or string.match(new, '^%-?%d*|%-?%d+|%-?%d*$')) then
        change(inv, new)
        replayed = replayed + 1
    end
end
local version = redis.call('INCR', live.version)
journal(version .. ':rebuild', journal_cap)
local c = counts()
return {'swapped', c[1], c[2], c[3], c[4], replayed}
"""
)
