-- sluice.pretty - the pretty printer of the REPL and the console, for specs and tools
-- too: a value as a readable Lua constructor.
--
--   local pretty = require "sluice.pretty"
--   print(pretty.format({ count = 3, tags = { "a", "b" } }))
--   -- { count = 3, tags = { "a", "b" } }
--
-- pretty.format(value [, opts]) -> string
--   Tables print as Lua constructors: the array part (1..n) in order without keys,
--   then the other keys sorted (numbers, then strings, then the rest by their
--   tostring), identifiers bare (`count = 3`), other keys bracketed (`["a-b"] = 1`,
--   `[10] = 1`). A table that fits on one line (opts.width, 72 columns, with its
--   indentation) and holds no table prints on one line; otherwise one entry per line,
--   indented by opts.indent ("  "). More than opts.maxEntries (50) entries: the first
--   ones and `--[[ N more ]]`. Deeper than opts.maxDepth (6): `{...}`. A table already
--   being printed (a cycle): `<cycle>`. Strings are double-quoted with \\ \" \n \r \t
--   and \ddd escapes; the null sentinel (cjson.null, the engine's JSON null) prints
--   `null`; floats keep their point (1.0), inf and nan print 1/0, -1/0, 0/0.
--   opts.color: ANSI colours (strings green, numbers cyan, true/false/nil/null
--   magenta); the REPL turns it on only on a terminal.
local M = {}

local has_cjson, cjson = pcall(require, "cjson")
local NULL = has_cjson and cjson.null or nil

local COLORS = { string = "\27[32m", number = "\27[36m", constant = "\27[35m" }
local RESET = "\27[0m"

local function paint(opts, kind, text)
  if not opts.color then return text end
  return COLORS[kind] .. text .. RESET
end

local function quote(s)
  return '"' .. s:gsub('[%c"\\]', function(c)
    if c == "\n" then return "\\n" end
    if c == "\r" then return "\\r" end
    if c == "\t" then return "\\t" end
    if c == '"' or c == "\\" then return "\\" .. c end
    return string.format("\\%03d", c:byte())
  end) .. '"'
end

local function number(n)
  if n ~= n then return "0/0" end
  if n == math.huge then return "1/0" end
  if n == -math.huge then return "-1/0" end
  if math.type(n) == "integer" then return tostring(n) end
  local s = string.format("%.14g", n)
  if tonumber(s) ~= n then s = string.format("%.17g", n) end
  if not s:find("[%.eEn]") then s = s .. ".0" end
  return s
end

local KEYWORDS = {}
for w in ([[and break do else elseif end false for function goto if in local nil not
  or repeat return then true until while]]):gmatch("%a+") do KEYWORDS[w] = true end

local function key_text(k, opts)
  if type(k) == "string" and k:match("^[%a_][%w_]*$") and not KEYWORDS[k] then return k end
  if type(k) == "string" then return "[" .. paint(opts, "string", quote(k)) .. "]" end
  if type(k) == "number" then return "[" .. paint(opts, "number", number(k)) .. "]" end
  return "[" .. tostring(k) .. "]"
end

local function key_less(a, b)
  local ta, tb = type(a), type(b)
  if ta ~= tb then
    local rank = { number = 1, string = 2 }
    local ra, rb = rank[ta] or 3, rank[tb] or 3
    if ra ~= rb then return ra < rb end
    return tostring(a) < tostring(b)
  end
  if ta == "number" or ta == "string" then return a < b end
  return tostring(a) < tostring(b)
end

local format_value

-- The entries of t: the array part, then the other keys sorted.
local function entries(t)
  local list, n = {}, #t
  for i = 1, n do list[#list + 1] = { nil, t[i] } end
  local keys = {}
  for k in pairs(t) do
    if not (math.type(k) == "integer" and k >= 1 and k <= n) then keys[#keys + 1] = k end
  end
  table.sort(keys, key_less)
  for _, k in ipairs(keys) do list[#list + 1] = { k, t[k] } end
  return list
end

local function format_table(t, opts, depth, seen, col)
  if seen[t] then return "<cycle>" end
  if depth > opts.maxDepth then return "{...}" end
  local list = entries(t)
  if #list == 0 then return "{}" end
  seen[t] = true
  local shown, nested = math.min(#list, opts.maxEntries), false
  local parts = {}
  for i = 1, shown do
    local k, v = list[i][1], list[i][2]
    if type(v) == "table" and v ~= NULL then nested = true end
    local prefix = k == nil and "" or key_text(k, opts) .. " = "
    parts[i] = { prefix, v }
  end
  local more = #list - shown
  -- One line when no entry is a table and it fits.
  if not nested then
    local items = {}
    for i, p in ipairs(parts) do items[i] = p[1] .. format_value(p[2], opts, depth + 1, seen, 0) end
    if more > 0 then items[#items + 1] = "--[[ " .. more .. " more ]]" end
    local line = "{ " .. table.concat(items, ", ") .. " }"
    local visible = opts.color and line:gsub("\27%[%d+m", "") or line
    if col + #visible <= opts.width then
      seen[t] = nil
      return line
    end
  end
  local pad = opts.indent:rep(depth - 1)
  local out = { "{" }
  for _, p in ipairs(parts) do
    out[#out + 1] = pad .. opts.indent .. p[1]
      .. format_value(p[2], opts, depth + 1, seen, #pad + #opts.indent + #p[1]) .. ","
  end
  if more > 0 then out[#out + 1] = pad .. opts.indent .. "--[[ " .. more .. " more ]]" end
  out[#out + 1] = pad .. "}"
  seen[t] = nil
  return table.concat(out, "\n")
end

function format_value(v, opts, depth, seen, col)
  if v == NULL and NULL ~= nil then return paint(opts, "constant", "null") end
  local tv = type(v)
  if tv == "string" then return paint(opts, "string", quote(v)) end
  if tv == "number" then return paint(opts, "number", number(v)) end
  if tv == "boolean" or tv == "nil" then return paint(opts, "constant", tostring(v)) end
  if tv == "table" then return format_table(v, opts, depth, seen, col) end
  return tostring(v)
end

function M.format(value, opts)
  opts = opts or {}
  local o = {
    color = opts.color or false,
    indent = opts.indent or "  ",
    width = opts.width or 72,
    maxEntries = opts.maxEntries or 50,
    maxDepth = opts.maxDepth or 6,
  }
  return format_value(value, o, 1, {}, 0)
end

return M
