-- pretty_spec.lua - sluice.pretty, the REPL's pretty printer (sorted keys, nesting,
-- elision, depth limit, null, colour on request).
local pretty = require "sluice.pretty"
local cjson = require "cjson"

describe("sluice.pretty", function()
  local f = pretty.format

  it("prints scalars as Lua would read them", function()
    assert.are.equal('"a\\"b\\\\c\\n\\t\\001"', f('a"b\\c\n\t\1'))
    assert.are.equal("42", f(42))
    assert.are.equal("1.0", f(1.0))
    assert.are.equal("0.1", f(0.1))
    assert.are.equal("1/0", f(math.huge))
    assert.are.equal("-1/0", f(-math.huge))
    assert.are.equal("0/0", f(0 / 0))
    assert.are.equal("true", f(true))
    assert.are.equal("nil", f(nil))
    assert.are.equal("null", f(cjson.null))
  end)

  it("prints a short flat table on one line with sorted keys, arrays in order", function()
    assert.are.equal("{}", f({}))
    assert.are.equal('{ 3, 1, 2 }', f({ 3, 1, 2 }))
    assert.are.equal('{ a = 1, b = "x", z = null }', f({ z = cjson.null, b = "x", a = 1 }))
    assert.are.equal('{ "first", [5] = true, ["a-b"] = 2, ["end"] = 3, k = 4 }',
      f({ "first", k = 4, ["a-b"] = 2, [5] = true, ["end"] = 3 }))
  end)

  it("nests and indents tables that hold tables", function()
    assert.are.equal(table.concat({
      "{",
      "  count = 3,",
      '  tags = { "a", "b" },',
      "}",
    }, "\n"), f({ count = 3, tags = { "a", "b" } }))
    assert.are.equal(table.concat({
      "{",
      "  {",
      "    { 1 },",
      "  },",
      "}",
    }, "\n"), f({ { { 1 } } }))
  end)

  it("breaks a flat table that is too wide", function()
    local t = {}
    for i = 1, 20 do t[i] = "item" .. i end
    local out = f(t)
    assert.truthy(out:find('^{\n  "item1",\n  "item2",'), out)
    assert.truthy(out:find('\n}$'), out)
  end)

  it("elides beyond 50 entries with a count", function()
    local t = {}
    for i = 1, 60 do t[i] = i end
    local out = f(t, { width = 10000 })
    assert.truthy(out:find("50, %-%-%[%[ 10 more %]%] }$"), out)
    assert.falsy(out:find("51"), out)
  end)

  it("stops at depth 6 and at cycles", function()
    local deep = { { { { { { { "too deep" } } } } } } }
    assert.truthy(f(deep):find("{...}", 1, true))
    assert.falsy(f(deep):find("too deep", 1, true))
    local c = { name = "loop" }
    c.self = c
    assert.truthy(f(c):find("self = <cycle>", 1, true), f(c))
    local shared = { 1 }
    assert.falsy(f({ a = shared, b = shared }):find("cycle"), "a table seen twice is no cycle")
  end)

  it("colours only when asked", function()
    assert.are.equal('"x"', f("x"))
    assert.are.equal('\27[32m"x"\27[0m', f("x", { color = true }))
    assert.are.equal("{ n = \27[36m1\27[0m }", f({ n = 1 }, { color = true }))
  end)
end)
