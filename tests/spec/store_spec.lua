-- store_spec.lua - the event store through the Lua module sluice.core.
local core = require "sluice.core"

local function tmpstore()
  local path = os.tmpname()
  os.remove(path)
  local store = assert(core.open(path))
  return store, path
end

describe("sluice.core store", function()
  local store, path
  before_each(function() store, path = tmpstore() end)
  after_each(function()
    store:close() -- closing twice is fine
    for _, suffix in ipairs { "", "-wal", "-shm" } do os.remove(path .. suffix) end
  end)

  it("appends and reads back with exact integers and array tags", function()
    local r = assert(store:append("s/1", "t/e", { n = 9007199254740993, list = core.array(), obj = {} }))
    assert.are.equal(2, r.offset)
    local evs = store:events("s/1")
    assert.are.equal(2, #evs)
    assert.are.equal("stream/created", evs[1].type)
    assert.are.same({ path = "s/1" }, evs[1].payload)
    local p = evs[2].payload
    assert.are.equal(9007199254740993, p.n)
    assert.are.equal("integer", math.type(p.n))
    assert.is_true(core.isarray(p.list))
    assert.is_false(core.isarray(p.obj))
    assert.are.equal('{"list":[],"n":9007199254740993,"obj":{}}', core.encode(p))
  end)

  it("returns nil and a message for bad input, writing nothing", function()
    local r, err = store:append("s//1", "t", {})
    assert.is_nil(r)
    assert.matches("^stream: invalid stream name", err)
    r, err = store:append("s/1", "t", "[1]")
    assert.is_nil(r)
    assert.matches("^payload: must be a JSON object, got array", err)
    r, err = store:append("s/1", "t", { f = function() end })
    assert.is_nil(r)
    assert.matches("payload.f", err)
    assert.are.same({}, store:streams())
  end)

  it("appends a batch all-or-nothing and names the failing event", function()
    local ok, err, idx = store:append_batch {
      { stream = "b/1", type = "t", payload = { i = 1 } },
      { stream = "b/1", type = "t", payload = { i = 2 }, offset = 9 },
    }
    assert.is_nil(ok)
    assert.matches("offset: expected 3", err)
    assert.are.equal(2, idx)
    assert.are.same({}, store:events("b/1"))
    local res = assert(store:append_batch {
      { stream = "b/1", type = "t", payload = { i = 1 } },
      { stream = "b/1", type = "t", payload = { i = 2 }, offset = 3 },
    })
    assert.are.same({ 2, 3 }, { res[1].offset, res[2].offset })
  end)

  it("answers a repeated idempotency key with the first event", function()
    local a = assert(store:append("k/1", "t", { v = 1 }, { key = "x" }))
    local b = assert(store:append("k/1", "t", { v = 2 }, { key = "x" }))
    assert.are.same({ a.offset, a.position }, { b.offset, b.position })
    assert.is_false(a.duplicate)
    assert.is_true(b.duplicate)
    assert.are.same({ v = 1 }, store:events("k/1", { from = 2 })[1].payload)
  end)

  it("lists streams with pause state and metadata", function()
    assert(store:append("p/1", "stream/metadata-updated", { metadata = { a = 1 } }))
    assert(store:append("p/1", "stream/paused", { reason = "r" }))
    local st = store:streams("p/1")
    assert.are.equal(1, #st)
    assert.is_true(st[1].paused)
    assert.are.equal("r", st[1].pauseReason)
    assert.are.same({ a = 1 }, st[1].metadata)
    local _, err = store:append("p/1", "t")
    assert.are.equal("stream paused: r", err)
  end)

  it("decodes null to the sentinel shared with cjson", function()
    local v = assert(core.decode('{"a":null,"b":[null]}'))
    assert.are.equal(core.null, v.a)
    assert.are.equal(require("cjson").null, v.a)
    assert.are.equal('{"a":null,"b":[null]}', core.encode(v))
    local _, err = core.decode('{"a":1,"a":2}')
    assert.matches("duplicate key", err)
  end)

  it("raises on a closed store", function()
    store:close()
    assert.has_error(function() store:events("s/1") end, "store is closed")
  end)
end)
