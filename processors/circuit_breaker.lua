-- circuit_breaker.lua - a token bucket per stream (burstCapacity tokens, refilled at
-- refillRatePerMinute). Every event of the stream other than the stream lifecycle
-- events takes one token. Time is the events' createdAt, so replay is deterministic;
-- a clock going backwards counts as no time (negative elapsed is clamped to 0).
-- Configuring, pausing and resuming refill the bucket. The breaker is level-triggered:
-- every live event that leaves the bucket below zero while the stream is open appends
-- stream/paused (key stream-paused:<offset>). From that event on the breaker counts the
-- stream as paused (state.paused), so the events of the same burst that the store had
-- already accepted do not append a second pause (the store would refuse it: the stream
-- is closed); stream/resumed opens it again, with a full bucket.

-- Milliseconds since the epoch of "2026-11-25T12:00:00.123Z" (days-from-civil).
local function epoch_ms(ts)
  local y, mo, d, h, mi, s, ms = ts:match("^(%d+)-(%d+)-(%d+)T(%d+):(%d+):(%d+)%.(%d+)Z$")
  y, mo, d = tonumber(y), tonumber(mo), tonumber(d)
  if mo <= 2 then y = y - 1 end
  local era = (y >= 0 and y or y - 399) // 400
  local yoe = y - era * 400
  local doy = (153 * (mo + (mo > 2 and -3 or 9)) + 2) // 5 + d - 1
  local doe = yoe * 365 + yoe // 4 - yoe // 100 + doy
  local days = era * 146097 + doe - 719468
  return ((days * 24 + tonumber(h)) * 60 + tonumber(mi)) * 60000
         + tonumber(s) * 1000 + tonumber(ms)
end

-- A copy of state with the bucket refilled up to `now`.
local function refilled(state, now)
  local next = {}
  for k, v in pairs(state) do next[k] = v end
  if state.configured then
    local elapsed = math.max(0, now - (state.lastRefillAt or now))
    next.tokens = math.min(state.burstCapacity,
                           state.tokens + elapsed * state.refillRatePerMinute / 60000)
    next.lastRefillAt = math.max(now, state.lastRefillAt or now)
  end
  return next
end

local function full(state, now)
  local next = refilled(state, now)
  if next.configured then next.tokens = next.burstCapacity end
  return next
end

local lifecycle = {
  ["stream/created"] = true, ["stream/child-stream-created"] = true,
  ["stream/metadata-updated"] = true, ["stream/error-occurred"] = true,
}

return {
  contract = "circuit_breaker",
  reduce = {
    ["circuit-breaker/configured"] = function(state, event)
      local next = full(state, epoch_ms(event.createdAt))
      next.configured = true
      next.burstCapacity = event.payload.burstCapacity
      next.refillRatePerMinute = event.payload.refillRatePerMinute
      next.tokens = event.payload.burstCapacity
      next.lastRefillAt = epoch_ms(event.createdAt)
      return next
    end,
    ["stream/paused"] = function(state, event)
      local next = full(state, epoch_ms(event.createdAt))
      next.paused = true
      return next
    end,
    ["stream/resumed"] = function(state, event)
      local next = full(state, epoch_ms(event.createdAt))
      next.paused = false
      return next
    end,
    ["*"] = function(state, event)
      if lifecycle[event.type] or not state.configured then return nil end
      local next = refilled(state, epoch_ms(event.createdAt))
      next.tokens = next.tokens - 1
      if next.tokens < 0 then next.paused = true end
      return next
    end,
  },
  processEvent = {
    ["*"] = function(event, ctx)
      if lifecycle[event.type] or not ctx.state.configured then return end
      if ctx.state.tokens < 0 and not ctx.previousState.paused then
        ctx.append("stream/paused", { reason = "circuit breaker: rate limit exceeded" },
                   { idempotencyKey = "stream-paused:" .. event.offset })
      end
    end,
  },
}
