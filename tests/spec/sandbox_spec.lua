-- sandbox_spec.lua - the sandbox seen from a processor author's specs: sluice.testing
-- always runs strict mode, so a reduce or hook that changes the tables it was given,
-- or a reduce that is not deterministic, fails the run naming why; and the sandbox's
-- refusals reach the spec as the engine's messages. Fixtures: tests/spec/fixtures.
local testing = require "sluice.testing"

local FIXTURES = "tests/spec/fixtures"

local function misbehaver()
  return testing.processor {
    script = FIXTURES .. "/misbehaver.lua",
    schemas = { FIXTURES .. "/schemas" },
    streams = "s/*",
    retry = { attempts = 1, backoff = "1ms" },
  }
end

local function step(by, misbehave) return { type = "s/step", payload = { by = by, misbehave = misbehave } } end

describe("strict mode in sluice.testing", function()
  local p
  before_each(function() p = misbehaver() end)
  after_each(function() p:close() end)

  it("lets a well-behaved reduce through", function()
    p:given("s/1", { step(2), step(3) })
    p:run()
    p:expect_state("s/1", { total = 5, log = { last = 3 } })
  end)

  it("fails a reduce that changes the state it was given, naming the field", function()
    p:given("s/1", { step(1), step(2, "mutate-state") })
    assert.error_matches(function() p:run() end,
      "strict: reduce changed a table it was given: state.total was changed", 1, true)
    assert.are.equal("faulted", p:instance("s/1").status)
    assert.are.equal(0, p:instance("s/1").offset) -- nothing of the batch committed
  end)

  it("names a nested field", function()
    p:given("s/1", { step(4, "mutate-nested") })
    assert.error_matches(function() p:run() end, "state.log.last was changed", 1, true)
  end)

  it("fails a reduce that changes its event", function()
    p:given("s/1", { step(4, "mutate-event") })
    assert.error_matches(function() p:run() end,
      "strict: reduce changed a table it was given: event.payload.by was changed", 1, true)
  end)

  it("fails a processEvent that changes ctx.state", function()
    p:given("s/1", { step(4, "hook-state") })
    assert.error_matches(function() p:run() end,
      "strict: processEvent changed a table it was given: ctx.state.log.last was changed", 1, true)
  end)

  it("reduces every batch twice and fails a reduce that is not deterministic", function()
    p:given("s/1", { step(1, "flaky"), step(1, "flaky") })
    assert.error_matches(function() p:run() end,
      "strict: reduce is not deterministic: reducing the batch again from the same state"
      .. " gave another state (state.total differs)", 1, true)
  end)

  it("refuses math.random in reduce", function()
    p:given("s/1", { step(1, "random") })
    assert.error_matches(function() p:run() end, "math.random is not available in reduce", 1, true)
  end)

  it("refuses a global write, naming the script and line", function()
    p:given("s/1", { step(1, "global") })
    assert.error_matches(function() p:run() end,
      "misbehaver.lua:23: assignment to undeclared global 'last_seen'", 1, true)
  end)
end)
