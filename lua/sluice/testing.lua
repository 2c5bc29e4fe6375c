-- sluice.testing - "given these events, expect this state and these emitted events"
-- specs for processor authors, on the real engine (require "sluice.core") and a
-- temporary store.
--
--   local testing = require "sluice.testing"
--
--   describe("counter", function()
--     local p
--     before_each(function()
--       p = testing.processor {
--         script = "processors/counter.lua", -- relative to the current directory
--         schemas = { "schemas" },           -- contract search path (optional; the
--                                            -- built-in schemas are always on it)
--         streams = "counters/*",            -- default "**"
--       }
--     end)
--     after_each(function() p:close() end)
--
--     it("announces 100 once", function()
--       p:given("counters/a", { { type = "counter/incremented", payload = { by = 60 } },
--                               { type = "counter/incremented", payload = { by = 60 } } })
--       p:run()
--       p:expect_state("counters/a", { count = 120 })
--       p:expect_emitted("counters/a", { { type = "counter/milestone", payload = { count = 120 } } })
--     end)
--   end)
--
-- testing.processor(opts) -> p. It creates a temporary directory (os.tmpname() plus
-- ".d"; the name os.tmpname reserved is kept until close), writes a deployment file
-- there with absolute paths, one processor and a store in the same directory.
-- opts:
--   script       required; the processor script (relative paths: to the current
--                directory)
--   name         the processor's name in the deployment; default: the script's file
--                name without ".lua" (processors/counter.lua -> "counter")
--   schemas      array of contract directories (relative: to the current directory)
--   streams      stream name or pattern, default "**"
--   mode         "each" (default) or "all"
--   sideEffects  "all" (default: tests want processEvent to run for the events they
--                give) or "new" (the engine's default: the first p:run() records the
--                store's head position as the side-effect anchor; events at or below
--                it are reduced but get no processEvent)
--   retry        default { attempts = 4, backoff = "1ms" }: the engine's attempt count
--                with a short backoff, so a fault is reached in milliseconds
--   durability   default "normal" (a temporary store need not survive power loss)
--   limits, batchSize  passed through to the deployment unchanged
-- Any other key is an error naming it, with the closest known option ("unknown
-- option 'stream' (did you mean 'streams'?)").
--
-- Methods (those that raise do so with the engine's message, positioned at the spec
-- line that called them like any Lua error: "my_spec.lua:12: <message>"):
--   p:given(stream, events) appends events to stream in one all-or-nothing batch; an
--       event is {type=, payload=, metadata=, idempotencyKey= (or key=), offset=}; a
--       single event table may be given instead of an array. Returns the array of
--       {offset=, position=, duplicate=}. Raises when the store refuses the batch
--       (use p.store:append(...) to test a refusal: it returns nil, message).
--   p:run()                 runs the deployment until caught up (sluice run
--       --until-caught-up --strict, in this process); raises with the engine's message when
--       the script or contract fails to load or an instance is faulted (after its
--       retries). Returns p.
--   p:state([stream])       the instance's state table (mode "all": no stream)
--   p:instance([stream])    the instance's row {processor, stream, offset, status, state}
--                           (status "new" | "ok" | "faulted")
--   p:status()              every instance's status row (sluice status)
--   p:events(stream)        every event of the stream (including stream/created)
--   p:emitted([stream])     the events this processor appended (metadata.source
--       .processor == its name) to stream, or to any stream in position order; each is
--       the stored event: {type, payload, stream, offset, position, idempotencyKey,
--       metadata, createdAt}
--   p:expect_state([stream,] expected)   assert.same on the state, naming the instance
--   p:expect_emitted([stream,] expected) compares p:emitted(stream) with expected in
--       order and number: type always; payload, and idempotencyKey (or key), when the
--       expected entry has them (an entry without payload accepts any payload); other
--       fields of the expected entries are ignored
--   p:reset([stream [, {withEffects = true}]])   sluice reset
--   p:close()               closes the store and removes the temporary directory (also
--       on garbage collection and with `local p <close> = testing.processor {...}`);
--       calling it twice is fine
-- Fields: p.name, p.dir, p.deployment (the file), p.store (a sluice.core store handle
-- on the temporary store), p.options.
--
-- Strict mode is always on (sluice.testing runs `sluice run --strict`): a
-- batch fails, and p:run() raises, when a hook changed a table it was given (the
-- message names the field: "strict: reduce changed a table it was given:
-- state.count was changed"), or when reducing the batch's events a second time from
-- the same state gives another state (reduce is not deterministic).
local core = require "sluice.core"

local has_lfs, lfs = pcall(require, "lfs")

local M = {}

local Processor = {}
Processor.__index = Processor

-- ---- files --------------------------------------------------------------------------

local function shell_quote(s)
  return "'" .. s:gsub("'", "'\\''") .. "'"
end

local function cwd()
  local dir = has_lfs and lfs.currentdir() or os.getenv("PWD")
  if not dir then error("sluice.testing: cannot tell the current directory", 4) end
  return dir
end

local function absolute(path)
  if path:sub(1, 1) == "/" then return path end
  local full = (cwd() .. "/" .. path):gsub("/%./", "/")
  return full
end

local function make_dir(dir)
  if has_lfs then
    local ok, err = lfs.mkdir(dir)
    if not ok then return nil, "cannot create " .. dir .. ": " .. tostring(err) end
  elseif not os.execute("mkdir -m 700 " .. shell_quote(dir)) then
    return nil, "cannot create " .. dir
  end
  return true
end

-- Files the engine may leave next to the store when lfs cannot list the directory.
local known_files = { "deploy.lua", "store.db", "store.db-wal", "store.db-shm",
                      "store.db-journal" }

local function remove_tree(path)
  if has_lfs then
    local attr = lfs.symlinkattributes(path)
    if not attr then return end
    if attr.mode == "directory" then
      for entry in lfs.dir(path) do
        if entry ~= "." and entry ~= ".." then remove_tree(path .. "/" .. entry) end
      end
    end
    os.remove(path)
  else
    for _, f in ipairs(known_files) do os.remove(path .. "/" .. f) end
    os.remove(path)
  end
end

local function write_file(path, text)
  local f, err = io.open(path, "w")
  if not f then return nil, err end
  local ok, werr = f:write(text)
  f:close()
  if not ok then return nil, werr end
  return true
end

-- A Lua literal for a deployment value: strings, numbers, booleans and tables of them.
local function literal(v, indent)
  local t = type(v)
  if t == "string" or t == "number" or t == "boolean" then
    return string.format("%q", v)
  elseif t == "table" then
    indent = indent or ""
    local inner, parts, keys = indent .. "  ", {}, {}
    for k in pairs(v) do keys[#keys + 1] = k end
    table.sort(keys, function(a, b)
      if type(a) == type(b) then return a < b end
      return type(a) == "number"
    end)
    for _, k in ipairs(keys) do
      parts[#parts + 1] = inner .. "[" .. string.format("%q", k) .. "] = " ..
                          literal(v[k], inner) .. ",\n"
    end
    return "{\n" .. table.concat(parts) .. indent .. "}"
  end
  error("cannot write a " .. t .. " into the deployment", 0)
end

-- ---- construction --------------------------------------------------------------------

local passed_through = { "limits", "batchSize" }

-- Every option processor() knows: a typo (`stream =` for `streams =`) must not run
-- silently with the default.
local known_options = {
  script = true, name = true, schemas = true, streams = true, mode = true,
  sideEffects = true, retry = true, durability = true, limits = true, batchSize = true,
}

-- The known option closest to an unknown one (edit distance), or nil.
local function closest_option(key)
  local best, best_d
  for k in pairs(known_options) do
    local a, b = key:lower(), k:lower()
    local prev = {}
    for j = 0, #b do prev[j] = j end
    for i = 1, #a do
      local cur = { [0] = i }
      for j = 1, #b do
        local cost = a:sub(i, i) == b:sub(j, j) and 0 or 1
        cur[j] = math.min(prev[j] + 1, cur[j - 1] + 1, prev[j - 1] + cost)
      end
      prev = cur
    end
    local d = prev[#b]
    if d <= 3 and (not best_d or d < best_d or (d == best_d and k < best)) then
      best, best_d = k, d
    end
  end
  return best
end

function M.processor(opts)
  if type(opts) ~= "table" then
    error("sluice.testing.processor: expected a table of options", 2)
  end
  local unknown = {}
  for k in pairs(opts) do
    if not known_options[k] then unknown[#unknown + 1] = tostring(k) end
  end
  if #unknown > 0 then
    table.sort(unknown)
    local k = unknown[1]
    local guess = type(k) == "string" and closest_option(k)
    error("sluice.testing.processor: unknown option '" .. k .. "'"
      .. (guess and (" (did you mean '" .. guess .. "'?)") or "")
      .. (#unknown > 1 and (" (and " .. (#unknown - 1) .. " more)") or ""), 2)
  end
  if type(opts.script) ~= "string" then
    error("sluice.testing.processor: script: required, the processor script's path", 2)
  end
  local script = absolute(opts.script)
  local name = opts.name or script:match("([^/]+)$"):gsub("%.lua$", "")
  local schemas = {}
  for i, dir in ipairs(opts.schemas or {}) do schemas[i] = absolute(dir) end

  local reserved = os.tmpname()
  local dir = reserved .. ".d"
  local made, merr = make_dir(dir)
  if not made then
    os.remove(reserved)
    error("sluice.testing: " .. merr, 2)
  end

  local proc = {
    script = script,
    streams = opts.streams or "**",
    mode = opts.mode or "each",
    sideEffects = opts.sideEffects or "all",
    retry = opts.retry or { attempts = 4, backoff = "1ms" },
  }
  for _, k in ipairs(passed_through) do proc[k] = opts[k] end
  local deployment = {
    store = dir .. "/store.db",
    durability = opts.durability or "normal",
    schemas = #schemas > 0 and schemas or nil, -- an empty table would read as {}
    processors = { [name] = proc },
  }
  local file = dir .. "/deploy.lua"
  local self = setmetatable({
    name = name,
    dir = dir,
    deployment = file,
    options = opts,
    mode = proc.mode,
    _reserved = reserved,
  }, Processor)
  local ok, err = pcall(literal, deployment)
  if ok then
    ok, err = write_file(file, "-- written by sluice.testing\nreturn " .. err .. "\n")
  end
  if ok then
    self.store, err = core.open(deployment.store, {
      durability = deployment.durability, namespace = deployment.namespace,
      replicas = deployment.replicas,
    })
  end
  if not self.store then
    self:close()
    error("sluice.testing: " .. tostring(err), 2)
  end
  return self
end

-- ---- methods ----------------------------------------------------------------------------

-- Calls core.run/state/status/reset and raises with the engine's message on failure,
-- at the spec line that called the method (level 3: engine -> method -> spec).
-- They return nil, message on failure; the second result decides, because when the
-- deployment fails to load the current engine returns {messages}, message instead.
local function engine(fn, ...)
  local res, err = fn(...)
  if err ~= nil or res == nil then
    error(type(err) == "string" and err or "sluice.core failed without a message", 3)
  end
  return res
end

local function check_open(self, what)
  if self.closed then error("sluice.testing: " .. what .. " on a closed processor", 3) end
end

function Processor:given(stream, events)
  check_open(self, "given")
  if type(stream) ~= "string" then error("given: stream: expected a stream name", 2) end
  if type(events) ~= "table" then error("given: events: expected an array of events", 2) end
  if events.type ~= nil then events = { events } end
  if #events == 0 then return {} end
  local batch = {}
  for i, ev in ipairs(events) do
    if type(ev) ~= "table" or type(ev.type) ~= "string" then
      error(string.format("given(%s): event %d: type: required", stream, i), 2)
    end
    batch[i] = {
      stream = stream, type = ev.type, payload = ev.payload, metadata = ev.metadata,
      idempotencyKey = ev.idempotencyKey or ev.key, offset = ev.offset,
    }
  end
  local res, err, index = self.store:append_batch(batch)
  if not res then
    error(string.format("given(%s): event %d (%s): %s", stream, index or 0,
                        batch[index or 1].type, err), 2)
  end
  return res
end

function Processor:run()
  check_open(self, "run")
  local ok, err = core.run(self.deployment, { untilCaughtUp = true, strict = true })
  if err ~= nil or not ok then
    -- A deployment that does not load: name every error, not only the first.
    local loads, errors = core.check(self.deployment)
    if not loads and type(errors) == "table" and #errors > 1 then
      err = table.concat(errors, "\n")
    end
    error(type(err) == "string" and err or "sluice.core.run failed without a message", 2)
  end
  return self
end

local function instance_stream(self, stream)
  if self.mode == "all" then return nil end
  if type(stream) ~= "string" then
    error("sluice.testing: a stream is required (processor '" .. self.name ..
          "' runs in mode \"each\")", 3)
  end
  return stream
end

function Processor:instance(stream)
  check_open(self, "instance")
  return engine(core.state, self.deployment, self.name, instance_stream(self, stream))[1]
end

function Processor:state(stream)
  check_open(self, "state")
  return engine(core.state, self.deployment, self.name, instance_stream(self, stream))[1].state
end

function Processor:status()
  check_open(self, "status")
  local rows = engine(core.status, self.deployment)
  return rows
end

function Processor:reset(stream, opts)
  check_open(self, "reset")
  engine(core.reset, self.deployment, self.name, stream, opts)
  return self
end

function Processor:events(stream)
  check_open(self, "events")
  return self.store:events(stream)
end

local function emitted_by(name, events, out)
  for _, ev in ipairs(events) do
    local src = type(ev.metadata) == "table" and ev.metadata.source
    if type(src) == "table" and src.processor == name then out[#out + 1] = ev end
  end
  return out
end

function Processor:emitted(stream)
  check_open(self, "emitted")
  if stream then return emitted_by(self.name, self.store:events(stream), {}) end
  local out = {}
  for _, s in ipairs(self.store:streams()) do
    emitted_by(self.name, self.store:events(s.stream), out)
  end
  table.sort(out, function(a, b) return a.position < b.position end)
  return out
end

-- luassert's same, failing at the spec line that called p:expect_*.
local function same(expected, actual, message)
  local ok, err = pcall(require("luassert").same, expected, actual, message)
  if ok then return end
  local info = debug.getinfo(3, "Sl")
  local at = info and info.currentline > 0 and info.short_src .. ":" .. info.currentline .. ": "
             or ""
  local function relocate(m) return at .. m:gsub("^[^\n]-%.lua:%d+: ", "", 1) end
  if type(err) == "string" then
    err = relocate(err)
  elseif type(err) == "table" and type(err.message) == "string" then
    err.message = relocate(err.message)
  end
  error(err, 0)
end

local function where(self, stream)
  if self.mode == "all" or stream == nil then return "processor '" .. self.name .. "'" end
  return "processor '" .. self.name .. "' on " .. stream
end

-- The compared part of an emitted event: type; payload and the key when `like` has them.
local function compared(ev, like)
  local entry = { type = ev.type }
  if like.payload ~= nil then entry.payload = ev.payload end
  if like.key ~= nil then entry.key = ev.idempotencyKey or ev.key end
  if like.idempotencyKey ~= nil then entry.idempotencyKey = ev.idempotencyKey end
  return entry
end

function Processor:expect_state(stream, expected)
  if expected == nil and type(stream) == "table" then stream, expected = nil, stream end
  local actual = self:state(stream)
  same(expected, actual, "state of " .. where(self, stream))
end

function Processor:expect_emitted(stream, expected)
  if expected == nil and type(stream) == "table" then stream, expected = nil, stream end
  local actual, got, want = self:emitted(stream), {}, {}
  for i, ev in ipairs(expected) do want[i] = compared(ev, ev) end
  for i, ev in ipairs(actual) do got[i] = compared(ev, expected[i] or {}) end
  same(want, got, "events emitted by " .. where(self, stream) ..
                  (stream and "" or " (all streams)"))
end

function Processor:close()
  if self.closed then return end
  self.closed = true
  if self.store then self.store:close() end
  remove_tree(self.dir)
  os.remove(self._reserved)
end

Processor.__gc = Processor.close
Processor.__close = Processor.close

return M
