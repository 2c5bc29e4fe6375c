-- counter_spec.lua - processors/counter.lua on the real engine, through sluice.testing.
local testing = require "sluice.testing"

local function inc(by) return { type = "counter/incremented", payload = { by = by } } end
local function milestone(count) return { type = "counter/milestone", payload = { count = count } } end

describe("counter processor", function()
  local p
  before_each(function()
    p = testing.processor {
      script = "processors/counter.lua",
      schemas = { "schemas" },
      streams = "counters/*",
    }
  end)
  after_each(function() p:close() end)

  it("counts increments per stream", function()
    p:given("counters/a", { inc(1), inc(2), inc(3) })
    p:given("counters/b", { inc(40) })
    p:run()
    p:expect_state("counters/a", { count = 6 })
    p:expect_state("counters/b", { count = 40 })
    assert.are.equal(4, p:instance("counters/a").offset) -- stream/created + 3 increments
  end)

  it("emits counter/milestone once when the count crosses 100, not on later increments", function()
    p:given("counters/a", { inc(60), inc(30) })
    p:run()
    p:expect_state("counters/a", { count = 90 })
    p:expect_emitted("counters/a", {})

    local crossing = p:given("counters/a", { inc(30) })[1].offset
    p:run()
    p:expect_state("counters/a", { count = 120 })
    p:expect_emitted("counters/a", { milestone(120) })
    -- the default key: <processor>@<source stream>:<source offset>#<n>
    local m = p:emitted("counters/a")[1]
    assert.are.equal("counter@counters/a:" .. crossing .. "#1", m.idempotencyKey)
    assert.are.same({ processor = "counter", version = 1, stream = "counters/a", offset = crossing },
                    m.metadata.source)

    p:given("counters/a", { inc(5), inc(50) })
    p:run()
    p:run() -- a run with nothing new does nothing
    p:expect_state("counters/a", { count = 175 })
    p:expect_emitted("counters/a", { milestone(120) })
  end)

  it("announces the crossing with the count of the crossing event when one batch crosses", function()
    p:given("counters/a", { inc(60), inc(60), inc(60) })
    p:run()
    p:expect_state("counters/a", { count = 180 })
    p:expect_emitted("counters/a", { milestone(120) })
  end)

  it("starts exactly at 100", function()
    p:given("counters/a", { inc(99) })
    p:run()
    p:expect_emitted("counters/a", {})
    p:given("counters/a", { inc(1) })
    p:run()
    p:expect_emitted("counters/a", { milestone(100) })
  end)

  it("zeroes the count on counter/reset, so a later crossing announces again", function()
    p:given("counters/a", { inc(150) })
    p:run()
    p:expect_emitted("counters/a", { milestone(150) })

    p:given("counters/a", { { type = "counter/reset" } })
    p:run()
    p:expect_state("counters/a", { count = 0 })

    p:given("counters/a", { inc(70), inc(70) })
    p:run()
    p:expect_state("counters/a", { count = 140 })
    p:expect_emitted("counters/a", { milestone(150), milestone(140) })
  end)

  it("keeps streams apart: a milestone goes to the stream that crossed", function()
    p:given("counters/a", { inc(100) })
    p:given("counters/b", { inc(99) })
    p:run()
    p:expect_emitted("counters/a", { milestone(100) })
    p:expect_emitted("counters/b", {})
  end)

  describe("payload validation", function()
    it("faults the run on by = 0, naming the schema's minimum", function()
      p:given("counters/a", { inc(0) })
      assert.error_matches(function() p:run() end, "minimum")
      local inst = p:instance("counters/a")
      assert.are.equal("faulted", inst.status)
      assert.are.equal(0, inst.offset)
      assert.are.same({ count = 0 }, inst.state)
      -- the fault is announced on the stream of the failing batch
      local last = p:events("counters/a")[3]
      assert.are.equal("stream/error-occurred", last.type)
      assert.are.equal("processor-ingest-failed:counter:0", last.idempotencyKey)
      assert.are.equal("counter", last.payload.processor)
      assert.matches("minimum", last.payload.message)
      -- a faulted instance stays faulted: the next run raises again
      assert.error_matches(function() p:run() end, "faulted")
    end)

    it("faults only the instance with the bad event", function()
      p:given("counters/a", { inc(0) })
      p:given("counters/b", { inc(10), inc(-1) })
      p:given("counters/c", { inc(10) })
      assert.has_error(function() p:run() end)
      assert.are.equal("faulted", p:instance("counters/a").status)
      assert.are.equal("faulted", p:instance("counters/b").status)
      p:expect_state("counters/b", { count = 0 }) -- the failing batch committed nothing
      assert.are.equal("ok", p:instance("counters/c").status)
      p:expect_state("counters/c", { count = 10 })
    end)

    it("names the processor and the failing event in the error", function()
      -- The engine's own format for a failing event is "processor '<name>' failed at
      -- <stream>@<offset> (<type>): payload: <schema error>".
      p:given("counters/a", { inc(0) })
      local ok, err = pcall(p.run, p)
      assert.is_false(ok)
      assert.truthy(err:find("processor 'counter' failed at counters/a@2 (counter/incremented): payload: ",
                             1, true), err)
      assert.matches("minimum", err)
    end)
  end)
end)
