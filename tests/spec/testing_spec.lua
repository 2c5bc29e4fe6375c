-- testing_spec.lua - sluice.testing itself: its temporary directory, how it reports
-- failures, and what p:emitted returns. Fixtures: tests/spec/fixtures.
local testing = require "sluice.testing"

local FIXTURES = "tests/spec/fixtures"

local function exists(path)
  local f = io.open(path, "r")
  if f then f:close() end
  return f ~= nil
end

local function exploder(opts)
  opts = opts or {}
  opts.script = FIXTURES .. "/exploder.lua"
  opts.schemas = { FIXTURES .. "/schemas" }
  opts.streams = opts.streams or "t/*"
  return testing.processor(opts)
end

local function poke(n, explode) return { type = "t/poked", payload = { n = n, explode = explode } } end

describe("sluice.testing", function()
  describe("its temporary directory", function()
    it("holds the deployment and the store, and close removes it", function()
      local p = exploder()
      assert.are.equal(p.dir .. "/deploy.lua", p.deployment)
      assert.is_true(exists(p.deployment))
      p:given("t/1", poke(1))
      p:run()
      assert.is_true(exists(p.dir .. "/store.db"))
      local dir = p.dir
      p:close()
      assert.is_false(exists(p.deployment))
      assert.is_false(exists(dir .. "/store.db"))
      assert.is_false(exists(dir .. "/store.db-wal"))
      assert.is_nil(io.open(dir)) -- the directory itself is gone
      assert.is_nil(io.open(p._reserved))
    end)

    it("writes absolute paths, so the deployment works from any directory", function()
      local p = exploder()
      local text = assert(io.open(p.deployment)):read("a")
      p:close()
      for path in text:gmatch('"(/[^"]*)"') do
        assert.are.equal("/", path:sub(1, 1))
      end
      assert.truthy(text:find('"' .. p.dir .. '/store.db"', 1, true))
      assert.falsy(text:find('"tests/spec', 1, true))
    end)

    it("gives each processor its own directory and store", function()
      local a, b = exploder(), exploder()
      assert.are_not.equal(a.dir, b.dir)
      a:given("t/1", poke(1))
      a:run()
      b:run()
      assert.are.equal(0, #b:events("t/1"))
      a:close()
      b:close()
    end)

    it("may be closed twice, and refuses to work once closed", function()
      local p = exploder()
      p:close()
      p:close()
      assert.error_matches(function() p:run() end, "closed")
    end)

    it("is removed at the end of a <close> scope", function()
      local dir
      do
        local p <close> = exploder()
        dir = p.dir
        assert.is_true(exists(dir .. "/deploy.lua"))
      end
      assert.is_false(exists(dir .. "/deploy.lua"))
    end)
  end)

  it("names the processor after its script, unless given a name", function()
    local p = exploder()
    assert.are.equal("exploder", p.name)
    p:close()
    p = exploder { name = "boom" }
    p:given("t/1", poke(1))
    p:run()
    assert.are.equal("boom", p:instance("t/1").processor)
    assert.are.equal("boom", p:emitted("t/1")[1].metadata.source.processor)
    p:close()
  end)

  describe("with a processor", function()
    local p
    before_each(function() p = exploder() end)
    after_each(function() p:close() end)

    it("returns the offsets of what it was given", function()
      local r = p:given("t/1", { poke(1), poke(2) })
      assert.are.same({ 2, 3 }, { r[1].offset, r[2].offset })
      r = p:given("t/1", poke(3)) -- one event need not be wrapped in an array
      assert.are.equal(4, r[1].offset)
    end)

    it("raises when the store refuses what it is given", function()
      p:given("t/1", { { type = "stream/paused", payload = { reason = "closed for the test" } } })
      assert.error_matches(function() p:given("t/1", poke(1)) end,
                           "given%(t/1%): event 1 %(t/poked%): stream paused: closed for the test")
      local ok, err = p.store:append("t/1", "t/poked") -- the raw store answers nil, message
      assert.is_nil(ok)
      assert.are.equal("stream paused: closed for the test", err)
    end)

    it("makes run raise with the processor's error message when reduce fails", function()
      p:given("t/1", { poke(1), poke(7, "reduce") })
      local ok, err = pcall(p.run, p)
      assert.is_false(ok)
      assert.truthy(err:find("kaboom in reduce: 7", 1, true), err)
      assert.truthy(err:find("processor 'exploder'", 1, true), err)
      assert.truthy(err:find("t/1@3 (t/poked)", 1, true), err)
      local inst = p:instance("t/1")
      assert.are.equal("faulted", inst.status)
      assert.are.same({ pokes = 0 }, inst.state) -- the failing batch committed nothing
      assert.are.same({}, p:emitted("t/1"))
    end)

    it("makes run raise with the processor's error message when processEvent fails", function()
      p:given("t/1", poke(1))
      p:run()
      p:given("t/1", poke(2, "hook"))
      assert.error_matches(function() p:run() end, "kaboom in processEvent")
      p:expect_state("t/1", { pokes = 1 })
      p:expect_emitted("t/1", { { type = "t/noted", payload = { n = 1 } } })
    end)

    it("positions the run error at the spec line", function()
      p:given("t/1", poke(1, "reduce"))
      local ok, err = pcall(function() p:run() end)
      assert.is_false(ok)
      assert.matches("^[^\n]*testing_spec%.lua:%d+: processor 'exploder'", err)
    end)

    it("filters emitted events by processor", function()
      p:given("t/1", poke(1))
      -- the same type, appended by someone else and by another processor
      p:given("t/1", { { type = "t/noted", payload = { n = 100 } },
                       { type = "t/noted", payload = { n = 200 },
                         metadata = { source = { processor = "other", stream = "t/1", offset = 2 } } } })
      p:given("t/1", poke(2))
      p:run()
      p:expect_emitted("t/1", { { type = "t/noted", payload = { n = 1 } },
                                { type = "t/noted", payload = { n = 2 } } })
      for _, ev in ipairs(p:emitted("t/1")) do
        assert.are.equal("exploder", ev.metadata.source.processor)
        assert.are.equal("exploder@t/1:" .. ev.metadata.source.offset .. "#1", ev.idempotencyKey)
      end
      assert.are.equal(7, #p:events("t/1")) -- stream/created, 4 given, 2 emitted
    end)

    it("collects emitted events of every stream in position order without a stream", function()
      p:given("t/b", poke(1))
      p:given("t/a", poke(2))
      p:given("t/b", poke(3))
      p:run()
      local streams = {}
      for i, ev in ipairs(p:emitted()) do streams[i] = ev.stream .. "=" .. ev.payload.n end
      table.sort(streams)
      assert.are.same({ "t/a=2", "t/b=1", "t/b=3" }, streams)
      local all = p:emitted()
      for i = 2, #all do assert.is_true(all[i - 1].position < all[i].position) end
      p:expect_emitted({ all[1], all[2], all[3] })
    end)

    it("compares only type when an expected emitted event has no payload", function()
      p:given("t/1", { poke(1), poke(2) })
      p:run()
      p:expect_emitted("t/1", { { type = "t/noted" }, { type = "t/noted", payload = { n = 2 } } })
    end)

    it("fails expect_emitted and expect_state at the spec line, naming the instance", function()
      p:given("t/1", poke(1))
      p:run()
      local ok, err = pcall(function() p:expect_emitted("t/1", { { type = "t/other" } }) end)
      assert.is_false(ok)
      err = tostring(err)
      assert.matches("^[^\n]*testing_spec%.lua:%d+: events emitted by processor 'exploder' on t/1", err)
      ok, err = pcall(function() p:expect_state("t/1", { pokes = 2 }) end)
      assert.is_false(ok)
      assert.matches("^[^\n]*testing_spec%.lua:%d+: state of processor 'exploder' on t/1", tostring(err))
      ok = pcall(function() p:expect_emitted("t/1", {}) end) -- too few expected
      assert.is_false(ok)
    end)

    it("reads the state of an instance that has not run as its initial state", function()
      p:given("t/1", poke(1))
      local inst = p:instance("t/1")
      assert.are.same({ "new", 0, { pokes = 0 } }, { inst.status, inst.offset, inst.state })
      assert.error_matches(function() p:state() end, "a stream is required")
    end)
  end)

  it("runs mode \"all\" with one instance and no stream", function()
    local p = exploder { mode = "all" }
    p:given("t/a", poke(1))
    p:given("t/b", poke(2))
    p:run()
    p:expect_state({ pokes = 2 })
    assert.are.same({ pokes = 2 }, p:state("t/whatever"))
    p:close()
  end)

  it("passes sideEffects = \"new\" through: events before the first run get no side effects", function()
    local p = exploder { sideEffects = "new" }
    p:given("t/1", poke(1))
    p:run() -- the first run anchors at the store's head: poke 1 is history
    p:given("t/1", poke(2))
    p:run()
    p:expect_state("t/1", { pokes = 2 })
    p:expect_emitted("t/1", { { type = "t/noted", payload = { n = 2 } } })
    p:close()
  end)

  it("makes run raise when the script does not load, naming the script", function()
    local p = testing.processor { script = FIXTURES .. "/broken.lua" }
    assert.are.equal("broken", p.name)
    local ok, err = pcall(p.run, p)
    assert.is_false(ok)
    assert.truthy(err:find("broken.lua", 1, true), err)
    assert.truthy(err:find("no_such_contract", 1, true), err)
    p:close()
  end)

  it("refuses options without a script", function()
    assert.error_matches(function() testing.processor {} end, "script: required")
  end)

  it("refuses an unknown option, naming it and the closest known one", function()
    assert.error_matches(function()
      testing.processor { script = "processors/counter.lua", stream = "counters/a" }
    end, "unknown option 'stream' %(did you mean 'streams'%?%)")
    assert.error_matches(function()
      testing.processor { script = "processors/counter.lua", frobnicate = 1, zz = 2 }
    end, "unknown option 'frobnicate' %(and 1 more%)")
  end)
end)
