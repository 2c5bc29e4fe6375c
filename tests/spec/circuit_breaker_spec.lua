-- circuit_breaker_spec.lua - processors/circuit_breaker.lua: its pure reduce functions
-- with chosen createdAt values, then the whole processor on the real engine through
-- sluice.testing. The engine part never depends on timing: createdAt comes from the
-- store's clock, so it uses refillRatePerMinute = 0, which makes every refill exactly
-- zero whatever the time between events.
local testing = require "sluice.testing"

local SCRIPT = "processors/circuit_breaker.lua"

-- Loads a processor script the way a plain dofile would, in an environment with the
-- standard functions and libraries (what the engine's sandbox also offers).
local function load_script(path)
  local env = {}
  for _, k in ipairs { "assert", "error", "ipairs", "next", "pairs", "pcall", "select",
                       "tonumber", "tostring", "type", "setmetatable", "getmetatable",
                       "rawequal", "rawget", "rawlen", "rawset", "xpcall", "string",
                       "table", "math", "utf8" } do
    env[k] = _G[k]
  end
  return assert(loadfile(path, "t", env))()
end

local function copy(t)
  local c = {}
  for k, v in pairs(t) do c[k] = v end
  return c
end

describe("circuit_breaker reduce (pure)", function()
  local cb = load_script(SCRIPT)
  local T0 = 1795608010000 -- 2026-11-25T12:00:10.000Z in milliseconds

  local function event(type, createdAt, payload)
    return { type = type, stream = "api/x", createdAt = createdAt, payload = payload or {} }
  end
  local function configured(at, cap, rate)
    return event("circuit-breaker/configured", at, { burstCapacity = cap, refillRatePerMinute = rate })
  end
  local function call(at) return event("api/called", at) end

  -- Folds events into state as the engine does: reduce[type], else reduce["*"], and nil
  -- means unchanged. Checks on the way that no reduce mutates the state it was given.
  local function fold(state, events)
    for _, ev in ipairs(events) do
      local before = copy(state)
      local next = (cb.reduce[ev.type] or cb.reduce["*"])(state, ev)
      assert.are.same(before, state, "reduce of " .. ev.type .. " mutated its state")
      if next ~= nil then state = next end
    end
    return state
  end

  local initial = { configured = false, paused = false }

  it("reads createdAt as milliseconds since the epoch", function()
    local s = fold(initial, { configured("2026-11-25T12:00:00.123Z", 5, 60) })
    assert.are.same({ configured = true, paused = false, burstCapacity = 5, refillRatePerMinute = 60,
                      tokens = 5, lastRefillAt = 1795608000123 }, s)
  end)

  it("takes one token per event and refills in proportion to the time elapsed", function()
    local s = fold(initial, { configured("2026-11-25T12:00:10.000Z", 2, 1),
                              call("2026-11-25T12:00:10.000Z"), call("2026-11-25T12:00:10.000Z") })
    assert.are.equal(0, s.tokens)
    s = fold(s, { call("2026-11-25T12:00:40.000Z") }) -- 30 s at 1 per minute: +0.5
    assert.are.equal(-0.5, s.tokens)
    s = fold(s, { call("2026-11-25T13:00:40.000Z") }) -- an hour: full (2), minus one
    assert.are.equal(1, s.tokens)
  end)

  it("clamps a negative elapsed time to zero: tokens neither grow nor shrink because of it", function()
    local s = fold(initial, { configured("2026-11-25T12:00:10.000Z", 10, 60) }) -- 1 token a second
    for _ = 1, 5 do s = fold(s, { call("2026-11-25T12:00:10.000Z") }) end
    assert.are.equal(5, s.tokens)

    s = fold(s, { call("2026-11-25T12:00:07.000Z") }) -- 3 s in the past
    assert.are.equal(4, s.tokens)                     -- only the event's own token
    assert.are.equal(T0, s.lastRefillAt)              -- the clock does not go back

    s = fold(s, { call("2025-01-01T00:00:00.000Z") }) -- far in the past
    assert.are.equal(3, s.tokens)
    assert.are.equal(T0, s.lastRefillAt)

    -- elapsed time counts from the latest time seen (T0), not from the past events:
    -- one second later refills exactly one token
    s = fold(s, { call("2026-11-25T12:00:11.000Z") })
    assert.are.equal(3, s.tokens)
    assert.are.equal(T0 + 1000, s.lastRefillAt)
  end)

  it("does not move lastRefillAt back on a pause or resume dated in the past", function()
    local s = fold(initial, { configured("2026-11-25T12:00:10.000Z", 2, 0),
                              call("2026-11-25T12:00:10.000Z"), call("2026-11-25T12:00:10.000Z"),
                              call("2026-11-25T12:00:10.000Z") })
    assert.are.equal(-1, s.tokens)
    s = fold(s, { event("stream/paused", "2026-11-25T12:00:05.000Z", { reason = "r" }) })
    assert.are.same({ true, 2, T0 }, { s.paused, s.tokens, s.lastRefillAt })
    s = fold(s, { event("stream/resumed", "2026-11-25T12:00:01.000Z") })
    assert.are.same({ false, 2, T0 }, { s.paused, s.tokens, s.lastRefillAt })
  end)

  it("leaves an unconfigured stream and the lifecycle events alone", function()
    local s = fold(initial, { call("2026-11-25T12:00:10.000Z") })
    assert.are.same(initial, s)
    s = fold(initial, { configured("2026-11-25T12:00:10.000Z", 2, 0) })
    local after = fold(s, { event("stream/created", "2026-11-25T12:00:11.000Z", { path = "api/x" }),
                            event("stream/metadata-updated", "2026-11-25T12:00:11.000Z", { metadata = {} }),
                            event("stream/error-occurred", "2026-11-25T12:00:11.000Z", { message = "m" }) })
    assert.are.same(s, after)
  end)

  it("asks to pause only for a configured, open stream whose bucket goes below zero", function()
    local appended = {}
    local open = { configured = true, paused = false, tokens = 1 }
    local function ctx(state, previous)
      return { state = state, previousState = previous or open,
               append = function(...) appended[#appended + 1] = { ... } end }
    end
    local ev = call("2026-11-25T12:00:10.000Z")
    ev.offset = 7
    cb.processEvent["*"](ev, ctx { configured = true, paused = false, tokens = 0 })
    cb.processEvent["*"](ev, ctx { configured = false, paused = false })
    assert.are.same({}, appended)
    -- a second event of the same burst: the breaker already counts the stream as paused
    cb.processEvent["*"](ev, ctx({ configured = true, paused = true, tokens = -1.5 },
                                 { configured = true, paused = true, tokens = -0.5 }))
    assert.are.same({}, appended)
    cb.processEvent["*"](ev, ctx { configured = true, paused = true, tokens = -0.5 })
    assert.are.same({ { "stream/paused", { reason = "circuit breaker: rate limit exceeded" },
                        { idempotencyKey = "stream-paused:7" } } }, appended)
  end)
end)

describe("circuit_breaker processor", function()
  local p
  before_each(function()
    p = testing.processor { script = SCRIPT, schemas = { "schemas" }, streams = "api/*" }
  end)
  after_each(function() p:close() end)

  local function configure(cap, rate)
    return { type = "circuit-breaker/configured",
             payload = { burstCapacity = cap, refillRatePerMinute = rate } }
  end
  local function calls(n)
    local t = {}
    for i = 1, n do t[i] = { type = "api/called", payload = { i = i } } end
    return t
  end
  local function paused_at(offset)
    return { type = "stream/paused", key = "stream-paused:" .. offset,
             payload = { reason = "circuit breaker: rate limit exceeded" } }
  end
  -- The time-independent part of the state.
  local function bucket(stream)
    local s = p:state(stream)
    return { configured = s.configured, paused = s.paused, tokens = s.tokens,
             burstCapacity = s.burstCapacity }
  end

  it("does not limit a stream that was never configured", function()
    p:given("api/a", calls(5))
    p:run()
    p:expect_emitted("api/a", {})
    p:expect_state("api/a", { configured = false, paused = false })
  end)

  it("lets burstCapacity events through", function()
    p:given("api/a", { configure(2, 0) })
    p:given("api/a", calls(2))
    p:run()
    p:expect_emitted("api/a", {})
    assert.are.same({ configured = true, paused = false, tokens = 0, burstCapacity = 2 }, bucket("api/a"))
  end)

  it("pauses the stream at the first event beyond the capacity", function()
    p:given("api/a", { configure(2, 0) })
    local given = p:given("api/a", calls(3))
    p:run()
    p:expect_emitted("api/a", { paused_at(given[3].offset) })
    -- the pause refills the bucket and is recorded in the state
    assert.are.same({ configured = true, paused = true, tokens = 2, burstCapacity = 2 }, bucket("api/a"))
    -- the store now refuses the stream's events
    local ok, err = p.store:append("api/a", "api/called")
    assert.is_nil(ok)
    assert.are.equal("stream paused: circuit breaker: rate limit exceeded", err)
    assert.is_true(p.store:streams("api/a")[1].paused)
  end)

  it("counts per stream", function()
    p:given("api/a", { configure(2, 0) })
    p:given("api/b", { configure(2, 0) })
    local a = p:given("api/a", calls(3))
    p:given("api/b", calls(2))
    p:run()
    p:expect_emitted("api/a", { paused_at(a[3].offset) })
    p:expect_emitted("api/b", {})
  end)

  it("refills on resume, and is level-triggered: the next event below zero pauses again", function()
    p:given("api/a", { configure(2, 0) })
    local first = p:given("api/a", calls(3))
    p:run()
    p:expect_emitted("api/a", { paused_at(first[3].offset) })

    p:given("api/a", { { type = "stream/resumed", payload = { reason = "operator" } } })
    p:run()
    assert.are.same({ configured = true, paused = false, tokens = 2, burstCapacity = 2 }, bucket("api/a"))

    -- accepted and counted
    p:given("api/a", calls(2))
    p:run()
    assert.are.same({ configured = true, paused = false, tokens = 0, burstCapacity = 2 }, bucket("api/a"))
    p:expect_emitted("api/a", { paused_at(first[3].offset) })

    -- refill 0: the next event goes below zero and pauses again
    local again = p:given("api/a", calls(1))
    p:run()
    p:expect_emitted("api/a", { paused_at(first[3].offset), paused_at(again[1].offset) })
    assert.is_true(p:state("api/a").paused)
  end)

  it("refills with the new capacity when configured again", function()
    p:given("api/a", { configure(1, 0) })
    p:given("api/a", calls(1))
    p:given("api/a", { configure(3, 0) })
    p:run()
    assert.are.same({ configured = true, paused = false, tokens = 3, burstCapacity = 3 }, bucket("api/a"))
    local given = p:given("api/a", calls(4))
    p:run()
    p:expect_emitted("api/a", { paused_at(given[4].offset) })
  end)

  it("pauses once, without faulting, when a burst goes past the capacity by more than one event", function()
    -- Events already in the store behind the pausing one are still delivered; each is
    -- below zero, and a second stream/paused on the now paused stream is refused by
    -- the store, which fails the batch until the instance faults.
    p:given("api/a", { configure(2, 0) })
    local given = p:given("api/a", calls(4))
    p:run()
    assert.are.equal("ok", p:instance("api/a").status)
    p:expect_emitted("api/a", { paused_at(given[3].offset) })
    assert.is_true(p:state("api/a").paused)
  end)
end)
