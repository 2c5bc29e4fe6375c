-- echo_spec.lua - processors/echo.lua on the real engine, through sluice.testing.
local core = require "sluice.core"
local testing = require "sluice.testing"

local function input(payload) return { type = "echo/input-received", payload = payload } end

describe("echo processor", function()
  local p
  before_each(function()
    p = testing.processor {
      script = "processors/echo.lua",
      schemas = { "schemas" },
      streams = "echo/*",
    }
  end)
  after_each(function() p:close() end)

  -- The echoes expected for the given inputs: key echo:<offset>, seen = the payload.
  local function echoes_of(results, payloads)
    local out = {}
    for i, r in ipairs(results) do
      out[i] = { type = "echo/output-echoed", key = "echo:" .. r.offset,
                 payload = { seen = payloads[i] } }
    end
    return out
  end

  it("echoes each input exactly once, keyed by its offset", function()
    local payloads = { { a = 1 }, { text = "hi", nested = { deep = true } }, {} }
    local given = p:given("echo/1", { input(payloads[1]), input(payloads[2]), input(payloads[3]) })
    p:run()
    p:expect_state("echo/1", { received = 3 })
    p:expect_emitted("echo/1", echoes_of(given, payloads))
    for i, ev in ipairs(p:emitted("echo/1")) do
      assert.are.equal(given[i].offset, ev.metadata.source.offset)
      assert.are.equal("echo/1", ev.stream)
    end
  end)

  it("keeps the payload exact: 64-bit integers, arrays and null", function()
    local payload = { n = 9007199254740993, list = core.array { 1, 2 }, empty = core.array(),
                      none = core.null }
    local given = p:given("echo/1", input(payload))
    p:run()
    p:expect_emitted("echo/1", echoes_of(given, { payload }))
    local seen = p:emitted("echo/1")[1].payload.seen
    assert.are.equal("integer", math.type(seen.n))
    assert.are.equal(9007199254740993, seen.n)
    assert.are.equal('{"empty":[],"list":[1,2],"n":9007199254740993,"none":null}', core.encode(seen))
  end)

  it("does not echo twice when run twice", function()
    local given = p:given("echo/1", { input { i = 1 }, input { i = 2 } })
    p:run()
    p:run()
    p:expect_emitted("echo/1", echoes_of(given, { { i = 1 }, { i = 2 } }))
    p:expect_state("echo/1", { received = 2 })
  end)

  it("echoes only the new inputs on a later run, and never its own output", function()
    local first = p:given("echo/1", { input { i = 1 } })
    p:run()
    local second = p:given("echo/1", { input { i = 2 } })
    p:run()
    -- offsets: 1 stream/created, 2 input, 3 its echo, 4 input, 5 its echo
    assert.are.same({ 2, 4 }, { first[1].offset, second[1].offset })
    p:expect_emitted("echo/1", {
      { type = "echo/output-echoed", key = "echo:2", payload = { seen = { i = 1 } } },
      { type = "echo/output-echoed", key = "echo:4", payload = { seen = { i = 2 } } },
    })
    p:expect_state("echo/1", { received = 2 })
  end)

  it("does not echo again when rebuilt, even when its side effects run again", function()
    local given = p:given("echo/1", { input { i = 1 }, input { i = 2 } })
    p:run()
    -- a reset keeps the side-effects mark: the state is rebuilt without processEvent
    p:reset("echo/1")
    p:run()
    p:expect_state("echo/1", { received = 2 })
    p:expect_emitted("echo/1", echoes_of(given, { { i = 1 }, { i = 2 } }))
    -- --with-effects runs processEvent again: the echo:<offset> keys dedupe it
    p:reset("echo/1", { withEffects = true })
    p:run()
    p:expect_state("echo/1", { received = 2 })
    p:expect_emitted("echo/1", echoes_of(given, { { i = 1 }, { i = 2 } }))
  end)

  it("echoes on the stream of each input", function()
    local a = p:given("echo/a", input { from = "a" })
    local b = p:given("echo/b", input { from = "b" })
    p:run()
    p:expect_emitted("echo/a", echoes_of(a, { { from = "a" } }))
    p:expect_emitted("echo/b", echoes_of(b, { { from = "b" } }))
    assert.are.equal(2, #p:emitted())
  end)
end)
