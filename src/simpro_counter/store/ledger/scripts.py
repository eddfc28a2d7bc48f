"""The ledger's two Lua scripts, `APPLY` (one event) and `SWAP` (the end of a rebuild).

The scripts name their keys: each starts with the tables `live` (the ledger's keys) and,
for `SWAP`, `building` (the temporary hashes of a rebuild), generated from the fields of
`LedgerKeys` and `LedgerBuildingKeys`. The same field order builds the KEYS list passed
in (`apply_keys`, `swap_keys`), so the scripts and the caller cannot disagree on it.

`change(invoice, new)` sets the invoice's entry (`customer|cents|date`, or "d" to delete)
and keeps every count exact; it returns the outcome. Cents go to INCRBY/DECRBY as the
strings they are in the entry: a Lua number would be a double, printed with 14 significant
digits.

The growth history is kept the same way: `customer_days` holds, per customer, the days of
its dated invoices as `YYYY-MM-DD=n` sorted and comma-joined (a few entries for most
customers), so its first day is always known, also after its earliest invoice goes;
`first_days` counts the customers whose first invoice is on each day.
"""

from __future__ import annotations

from dataclasses import fields
from typing import Final

from simpro_counter.keys import LedgerBuildingKeys, LedgerKeys

# KEYS order: the live keys first, then (SWAP only) the temporary hashes of the rebuild.
_LIVE: Final = tuple(field.name for field in fields(LedgerKeys))
_BUILDING: Final = tuple(field.name for field in fields(LedgerBuildingKeys))


def apply_keys(keys: LedgerKeys) -> list[str]:
    """KEYS for `APPLY`: the live keys in the order the script's `live` table reads them."""
    return [getattr(keys, name) for name in _LIVE]


def swap_keys(keys: LedgerKeys, building: LedgerBuildingKeys) -> list[str]:
    """KEYS for `SWAP`: the live keys, then the rebuild's temporary hashes."""
    return [*apply_keys(keys), *(getattr(building, name) for name in _BUILDING)]


def _lua_table(variable: str, names: tuple[str, ...], first: int) -> str:
    """`local <variable> = {name = KEYS[first], ...}`: the keys by name, in KEYS order."""
    entries = ", ".join(f"{name} = KEYS[{first + i}]" for i, name in enumerate(names))
    return f"local {variable} = {{{entries}}}\n"


_CHANGE = """
local function first_of(list)
    return list and string.match(list, '^([^=]+)=') or nil
end

local function move_first(from, to)
    if from == to then return end
    if from and redis.call('HINCRBY', live.first_days, from, -1) <= 0 then
        redis.call('HDEL', live.first_days, from)
    end
    if to then redis.call('HINCRBY', live.first_days, to, 1) end
end

-- Add `delta` (1 or -1) invoices of `customer` on `day` to its sorted list of days.
local function count_day(customer, day, delta)
    local old = redis.call('HGET', live.customer_days, customer)
    local days, found = {}, false
    if old then
        for item in string.gmatch(old, '[^,]+') do
            local d, n = string.match(item, '^(.-)=(%d+)$')
            n = tonumber(n)
            if d == day then
                found = true
                n = n + delta
            end
            if not found and delta > 0 and d > day then
                days[#days + 1] = day .. '=1'
                found = true
            end
            if n > 0 then days[#days + 1] = d .. '=' .. n end
        end
    end
    if not found and delta > 0 then days[#days + 1] = day .. '=1' end
    local new = nil
    if #days > 0 then
        new = table.concat(days, ',')
        redis.call('HSET', live.customer_days, customer, new)
    else
        redis.call('HDEL', live.customer_days, customer)
    end
    move_first(first_of(old), first_of(new))
end

local function change(inv, new)
    local old = redis.call('HGET', live.invoice_entries, inv)
    if new == 'd' then
        if not old then return 'unchanged' end
    elseif old == new then
        return 'unchanged'
    end
    if old then
        local customer, cents, day = string.match(old, '^([^|]*)|([^|]*)|(.*)$')
        if customer ~= '' and day ~= '' then count_day(customer, day, -1) end
        if customer ~= '' and redis.call('HINCRBY', live.customer_invoices, customer, -1) <= 0 then
            redis.call('HDEL', live.customer_invoices, customer)
            redis.call('DECR', live.customers)
        end
        redis.call('DECRBY', live.revenue_cents, cents)
        redis.call('DECR', live.invoices)
    end
    if new == 'd' then
        redis.call('HDEL', live.invoice_entries, inv)
        return 'deleted'
    end
    local customer, cents, day = string.match(new, '^([^|]*)|([^|]*)|(.*)$')
    if customer ~= '' and day ~= '' then count_day(customer, day, 1) end
    redis.call('HSET', live.invoice_entries, inv, new)
    if customer ~= '' and redis.call('HINCRBY', live.customer_invoices, customer, 1) == 1 then
        redis.call('INCR', live.customers)
    end
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

# ARGV: invoice, new entry ("d" delete), journal cap.
# Returns {outcome, customers, invoices, revenue_cents, version}.
APPLY: Final = (
    _lua_table("live", _LIVE, 1)
    + _CHANGE
    + """
local invoice, new_entry, journal_cap = ARGV[1], ARGV[2], tonumber(ARGV[3])
local outcome = change(invoice, new_entry)
if outcome ~= 'unchanged' then
    local version = redis.call('INCR', live.version)
    journal(version .. ':' .. invoice .. ':' .. new_entry, journal_cap)
end
local c = counts()
return {outcome, c[1], c[2], c[3], c[4]}
"""
)

# `building`: the temporary invoice_entries, customer_invoices, customer_days and
# first_days (any may not exist, e.g. when the scan found no invoices). ARGV: customers,
# invoices, revenue cents, journal_from ("" = no replay), journal cap. Every version is
# journaled (events and the rebuild marker `<version>:rebuild`), so consecutive versions
# prove that nothing was trimmed.
# Returns {'gap', oldest journaled version} without touching anything, or
# {'swapped', customers, invoices, revenue_cents, version, replayed}.
SWAP: Final = (
    _lua_table("live", _LIVE, 1)
    + _lua_table("building", _BUILDING, len(_LIVE) + 1)
    + "local built = {"
    + ", ".join(f"'{name}'" for name in _BUILDING)
    + "}\n"
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
for _, name in ipairs(built) do
    -- UNLINK frees the old hash in the background; RENAME over it would free it here,
    -- holding Redis (and this client's short timeout) for ~0.1 s per 300k invoices.
    redis.call('UNLINK', live[name])
    if redis.call('EXISTS', building[name]) == 1 then
        redis.call('RENAME', building[name], live[name])
        redis.call('PERSIST', live[name])
    end
end
redis.call('SET', live.customers, customers)
redis.call('SET', live.invoices, invoices)
redis.call('SET', live.revenue_cents, revenue_cents)
local replayed = 0
for _, entry in ipairs(entries) do
    local inv, new = string.match(entry, '^%d+:(%d+):(.*)$')
    -- Skips the rebuild marker and entries in another format (format 1's, left in the
    -- journal by the previous version): failing here would leave the swap half done.
    if inv and (new == 'd' or string.match(new, '^%d*|%-?%d+|')) then
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
