-- sluice.repl - the session of `sluice repl [DEPLOYMENT]`: its helpers, help() and
-- completion. The C side (engine/sl_repl.c) reads lines, evaluates them and prints the
-- results; this module makes the globals the session works with.
--
--   local repl = require "sluice.repl"
--   local session = repl.new(deployment_or_nil, env, sys) -- installs the helpers in env
--   session.complete(line, word_start, word) -> array of candidates
--
-- sys is what the session may use of its process: core (sluice.core, or in the
-- console the runner's version of it), loadscript(path) -> chunk | nil, message (the
-- chunk with an environment of its own), readfile(path) -> text | nil, write(text),
-- getenv(name), show(value) -> text (as results print), now() -> an ISO-8601 UTC
-- time, sleep(ms), and in the console reload() and follow(what, position) (tail
-- hands the following to the client).
--
-- Helpers that fail raise with the engine's message (no traceback): the session prints
-- it and goes on.
local M = {}

local HELP = {
  { "processors()", "array of {name, contract, version, streams, mode, status}" },
  { "instances(p [, prefix])", "array of {stream, offset, head, lag, status} of processor p" },
  { "state(p [, stream])", "the instance's state table (mode \"all\": no stream)" },
  { "status()", "the rows of `sluice status`" },
  { "streams([prefix])", "the rows of `sluice streams`" },
  { "events(stream [, {from=, limit=, type=}])", "array of events (default: the last 20)" },
  { "append(stream, type [, payload [, {key=, metadata=, offset=}]])",
    "appends one event: {stream, offset, position}" },
  { "tail(stream_or_pattern [, {from=}])",
    "prints events as they are appended (a pattern with * or **) until Ctrl-C" },
  { "dryRun(p, stream, type [, payload])",
    "{previousState, state, emits, work, logs, error}: reduce and processEvent on a scratch copy; nothing is written" },
  { "stateAt(p, stream, offset)", "the state after the stream's events up to offset, replayed on a scratch copy" },
  { "lineage(stream, offset)", "{event, causes, effects}: what led to the event, and what it caused" },
  { "query(p, sql [, params])", "rows of a read-only query on processor p's own tables" },
  { "reset(p [, stream [, {withEffects=true}]])", "as `sluice reset`" },
  { "resume(p [, stream [, {skip=true} | {skipAll=true}]])", "as `sluice resume`" },
  { "deadLetters()", "as `sluice dead-letters`" },
  { "check()", "validates the deployment: true, or the errors" },
  { "reload()", "(console) loads the deployment again now, as a change of its files does" },
  { "help([name])", "this list, or one helper" },
  { "exit()", "leaves the session (Ctrl-D too)" },
}

local function fail(msg)
  error(tostring(msg), 0)
end

local function ok(v, msg)
  if v == nil then fail(msg) end
  return v
end

function M.new(deployment, env, sys)
  local S = {}
  local core = sys.core

  -- A list result: an array even when empty (JSON [] rather than {}).
  local function list(t)
    return core.array(t)
  end
  local info, store, scripts

  local function need_deployment(name)
    if not deployment then
      fail(name .. ": no deployment (start `sluice repl DEPLOYMENT`)")
    end
  end

  local function deployment_info()
    need_deployment("processors")
    if not info then info = ok(core.info(deployment)) end
    return info
  end

  local function the_store()
    if store then return store end
    local path, opts
    if deployment then
      path = deployment_info().store
      opts = { namespace = deployment_info().namespace, replicas = deployment_info().replicas }
    else
      path = sys.getenv and sys.getenv("SLUICE_STORE")
      if not path or path == "" then path = "sluice.db" end
      local ns = sys.getenv and sys.getenv("SLUICE_NAMESPACE")
      opts = { namespace = ns ~= "" and ns or nil }
    end
    store = ok(core.open(path, opts))
    return store
  end

  function env.processors()
    local rows, faulted = {}, {}
    for _, r in ipairs(ok(core.status(deployment))) do
      if r.status == "faulted" then faulted[r.processor] = true end
    end
    for _, p in ipairs(deployment_info().processors) do
      rows[#rows + 1] = {
        name = p.name, contract = p.contract, version = p.version, streams = p.streams,
        mode = p.mode, status = p.error and "broken" or faulted[p.name] and "faulted" or "ok",
        error = p.error,
      }
    end
    return list(rows)
  end

  function env.status()
    need_deployment("status")
    return list(ok(core.status(deployment)))
  end

  function env.instances(p, prefix)
    if type(p) ~= "string" then fail("instances: expected a processor name") end
    local rows, known = {}, false
    for _, q in ipairs(deployment_info().processors) do known = known or q.name == p end
    if not known then fail("instances: unknown processor '" .. p .. "'") end
    for _, r in ipairs(env.status()) do
      if r.processor == p and (not prefix or (r.stream or ""):sub(1, #prefix) == prefix) then
        rows[#rows + 1] = { stream = r.stream, offset = r.offset, head = r.head, lag = r.lag,
                            status = r.status }
      end
    end
    return list(rows)
  end

  function env.state(p, stream)
    need_deployment("state")
    if type(p) ~= "string" then fail("state: expected a processor name") end
    local rows = ok(core.state(deployment, p, stream))
    local function no_stream(r) return r.stream == nil or r.stream == core.null end
    if stream or #rows == 1 and no_stream(rows[1]) then
      return rows[1] and rows[1].state
    end
    local by = {}
    for _, r in ipairs(rows) do by[r.stream] = r.state end
    return by
  end

  function env.streams(prefix)
    return list(the_store():streams(prefix))
  end

  function env.events(stream, opts)
    if type(stream) ~= "string" then fail("events: expected a stream name") end
    opts = opts or {}
    if opts.from == nil and opts.limit == nil then
      -- The last 20: find the head first.
      local head = 0
      for _, s in ipairs(the_store():streams(stream)) do
        if s.stream == stream then head = s.head end
      end
      local from = head > 20 and head - 19 or 1
      return list(the_store():events(stream, { from = from, type = opts.type }))
    end
    return list(the_store():events(stream, opts))
  end

  function env.append(stream, type_, payload, opts)
    local r = ok(the_store():append(stream, type_, payload, opts))
    return { stream = stream, offset = r.offset, position = r.position,
             duplicate = r.duplicate or nil }
  end

  function env.query(p, sql, params)
    need_deployment("query")
    if type(p) ~= "string" or type(sql) ~= "string" then
      fail("query: expected (processor, sql [, params])")
    end
    return list(ok(core.query(deployment, p, sql, params)))
  end

  function env.reset(p, stream, opts)
    need_deployment("reset")
    return ok(core.reset(deployment, p, stream, opts))
  end

  function env.resume(p, stream, opts)
    need_deployment("resume")
    return ok(core.resume(deployment, p, stream, opts))
  end

  function env.deadLetters()
    need_deployment("deadLetters")
    return list(ok(core.deadLetters(deployment)))
  end

  function env.check()
    need_deployment("check")
    local good, errs = core.check(deployment)
    info = nil -- a changed deployment is read again
    if good then return true end
    return errs
  end

  function env.reload()
    if not sys.reload then
      fail("reload: only in the console (`sluice console`): a running `sluice run` "
        .. "also reloads by itself when its files change, and on SIGHUP")
    end
    need_deployment("reload")
    info, scripts = nil, {}
    return ok(sys.reload())
  end

  function env.help(name)
    if name == nil then
      local lines = {}
      for _, h in ipairs(HELP) do lines[#lines + 1] = string.format("  %-58s %s", h[1], h[2]) end
      return table.concat(lines, "\n")
    end
    for _, h in ipairs(HELP) do
      if h[1]:match("^[%w_]+") == name then return h[1] .. "\n  " .. h[2] end
    end
    fail("help: no helper '" .. tostring(name) .. "' (help() lists them)")
  end


  -- ---- scratch copies of a processor: its script and contract, outside the engine -----

  scripts = {}

  -- The processor's script table and its contract (decoded), loaded in this session.
  local function processor(p)
    if scripts[p] then return scripts[p] end
    local pi
    for _, q in ipairs(deployment_info().processors) do if q.name == p then pi = q end end
    if not pi then fail("unknown processor '" .. tostring(p) .. "'") end
    if pi.error then fail(pi.error) end
    local chunk, err = sys.loadscript(pi.script)
    if not chunk then fail(err) end
    local script = chunk()
    local contract
    for _, dir in ipairs(deployment_info().schemas) do
      local text = sys.readfile(dir .. "/" .. pi.contract .. ".contract.json")
      if text then
        contract = ok(core.decode(text))
        break
      end
    end
    if not contract then fail("contract '" .. pi.contract .. "' not found") end
    local consumes, all = {}, false
    for _, t in ipairs(contract.consumes or {}) do
      if t == "*" then all = true else consumes[t] = true end
    end
    scripts[p] = { info = pi, script = script, contract = contract,
                   consumes = function(t) return all or consumes[t] == true end }
    return scripts[p]
  end

  local function copy(v)
    if type(v) ~= "table" then return v end
    local t = {}
    for k, x in pairs(v) do t[k] = copy(x) end
    return setmetatable(t, getmetatable(v))
  end

  -- The engine's reduce step: reduce[type], else reduce["*"], else unchanged.
  local function reduce(sp, state, ev)
    local r = sp.script.reduce or {}
    local fn = r[ev.type] or r["*"]
    if not fn then return state end
    local new = fn(state, ev)
    if new == nil then return state end
    return new
  end

  function env.stateAt(p, stream, offset)
    if type(p) ~= "string" then fail("stateAt: expected a processor name") end
    local sp = processor(p)
    local state = copy(sp.contract.initialState)
    if sp.info.mode == "all" then
      if type(stream) == "number" then stream, offset = nil, stream end
      local pos = 1
      while true do
        local chunk = the_store():all(pos, 1000)
        for _, ev in ipairs(chunk) do
          if ev.position > offset then return state end
          if sp.consumes(ev.type) then state = reduce(sp, state, ev) end
        end
        if #chunk < 1000 then return state end
        pos = chunk[#chunk].position + 1
      end
    end
    if type(stream) ~= "string" or math.type(offset) ~= "integer" then
      fail("stateAt: expected (processor, stream, offset)")
    end
    for _, ev in ipairs(the_store():events(stream, { limit = offset })) do
      if sp.consumes(ev.type) then state = reduce(sp, state, ev) end
    end
    return state
  end

  function env.dryRun(p, stream, type_, payload)
    if type(p) ~= "string" or type(stream) ~= "string" or type(type_) ~= "string" then
      fail("dryRun: expected (processor, stream, type [, payload])")
    end
    local sp = processor(p)
    local head = 0
    for _, s in ipairs(the_store():streams(stream)) do
      if s.stream == stream then head = s.head end
    end
    local previous = copy(env.state(p, sp.info.mode == "all" and nil or stream))
    if previous == nil then previous = copy(sp.contract.initialState) end
    local ev = { stream = stream, offset = head + 1, position = 0, type = type_,
                 payload = payload or {}, createdAt = sys.now() }
    local result = { previousState = copy(previous), emits = list({}), work = list({}),
                     logs = list({}) }
    local good, err = pcall(function()
      if not sp.consumes(type_) then
        result.state = previous
        return
      end
      local state = reduce(sp, copy(previous), ev)
      result.state = copy(state)
      local pe = sp.script.processEvent or {}
      local fn = pe[type_] or pe["*"]
      if not fn then return end
      local function log(level)
        return function(...)
          local parts = {}
          for i = 1, select("#", ...) do parts[i] = tostring((select(i, ...))) end
          result.logs[#result.logs + 1] = { level = level, msg = table.concat(parts, " ") }
        end
      end
      local ctx = {
        state = state, previousState = previous, stream = stream, processor = p,
        checkpointOffset = ev.offset, streamMaxOffset = ev.offset,
        append = function(t, pl, opts)
          opts = opts or {}
          result.emits[#result.emits + 1] = { type = t, payload = pl or {},
            stream = opts.stream or stream, idempotencyKey = opts.idempotencyKey }
        end,
        block = function() result.work[#result.work + 1] = { kind = "block" } end,
        background = function() result.work[#result.work + 1] = { kind = "background" } end,
        fanOut = function() end,
        log = { debug = log("debug"), info = log("info"), warn = log("warn"), error = log("error") },
        db = setmetatable({}, { __index = function()
          return function() error("ctx.db is not available in dryRun (nothing is written)", 0) end
        end }),
      }
      fn(ev, ctx)
    end)
    if not good then result.error = tostring(err) end
    return result
  end

  local function same_source(md, stream, offset)
    local src = type(md) == "table" and md.source
    return type(src) == "table" and src.stream == stream and src.offset == offset
  end

  function env.lineage(stream, offset)
    if type(stream) ~= "string" or math.type(offset) ~= "integer" then
      fail("lineage: expected (stream, offset)")
    end
    local function event_at(s, o)
      local evs = the_store():events(s, { from = o, limit = 1 })
      return evs[1] and evs[1].offset == o and evs[1] or nil
    end
    local ev = event_at(stream, offset)
    if not ev then fail("lineage: no event at " .. stream .. "@" .. offset) end
    local causes, cur, seen = {}, ev, {}
    while type(cur.metadata) == "table" and type(cur.metadata.source) == "table" do
      local src = cur.metadata.source
      local key = tostring(src.stream) .. "@" .. tostring(src.offset)
      if seen[key] or type(src.stream) ~= "string" then break end
      seen[key] = true
      local up = event_at(src.stream, src.offset)
      if not up then break end
      causes[#causes + 1] = up
      cur = up
    end
    local effects, pos = {}, 1
    while true do
      local chunk = the_store():all(pos, 1000)
      for _, e in ipairs(chunk) do
        if same_source(e.metadata, stream, offset) then effects[#effects + 1] = e end
      end
      if #chunk < 1000 then break end
      pos = chunk[#chunk].position + 1
    end
    return { event = ev, causes = list(causes), effects = list(effects) }
  end

  -- A stream pattern as the deployment writes them: * one segment, ** any.
  local function matcher(pat)
    if not pat:find("*", 1, true) then return function(s) return s == pat end end
    local lp = "^" .. pat:gsub("[%^%$%(%)%%%.%[%]%+%-%?]", "%%%0"):gsub("%*%*", "\1"):gsub("%*", "[^/]+"):gsub("\1", ".+") .. "$"
    return function(s) return s:match(lp) ~= nil end
  end

  -- The events after position pos whose stream matches what (a name or a pattern),
  -- as lines to print, and the position to read from next. tail reads with it; the
  -- console's client asks for it again and again while it follows.
  function S.poll(what, pos)
    local match, lines = matcher(what), {}
    local chunk = the_store():all(pos, 1000)
    for _, e in ipairs(chunk) do
      if match(e.stream) then
        lines[#lines + 1] = sys.show({ stream = e.stream, offset = e.offset, type = e.type,
                                       payload = e.payload })
      end
      pos = e.position + 1
    end
    return lines, pos, #chunk
  end

  function env.tail(what, opts)
    if type(what) ~= "string" then fail("tail: expected a stream or a pattern") end
    opts = opts or {}
    if opts.from ~= nil and math.type(opts.from) ~= "integer" then
      fail("tail: from must be a position (an integer)")
    end
    local pos = opts.from or the_store():head() + 1
    if sys.follow then return sys.follow(what, pos) end
    while true do
      local lines, nextpos, n = S.poll(what, pos)
      for _, l in ipairs(lines) do sys.write(l .. "\n") end
      pos = nextpos
      if n == 0 then sys.sleep(100) end
    end
  end

  -- ---- completion -------------------------------------------------------------------------

  local HELPERS = {}
  for _, h in ipairs(HELP) do HELPERS[#HELPERS + 1] = h[1]:match("^[%w_]+") end

  local function starting(list, word, out, suffix)
    for _, c in ipairs(list) do
      if c:sub(1, #word) == word then out[#out + 1] = c .. (suffix or "") end
    end
  end

  -- line: the whole line; start: where the word being completed begins (1-based);
  -- word: its text. Inside a string of a helper call: processor or stream names;
  -- after `x.` or `x:`: fields of the table x; else globals and helpers.
  function S.complete(line, start, word)
    local out = {}
    local before = line:sub(1, start - 1)
    local quote = before:match("[\"']$")
    if quote then
      local fn = before:match("([%w_]+)%s*%(%s*[\"']$") or before:match("([%w_]+)%s*%(.-,%s*[\"']$")
      local names = {}
      local first_arg = before:match("[%w_]+%s*%(%s*[\"']$") ~= nil
      local takes_proc = { state = true, instances = true, reset = true, resume = true,
                           query = true, dryRun = true, stateAt = true }
      local ok_i, i = pcall(deployment_info)
      if fn and takes_proc[fn] and first_arg and ok_i then
        for _, p in ipairs(i.processors) do names[#names + 1] = p.name end
      else
        local ok_s, rows = pcall(function() return the_store():streams() end)
        if ok_s then for _, r in ipairs(rows) do names[#names + 1] = r.stream end end
      end
      table.sort(names)
      starting(names, word, out)
      return out
    end
    local path, sep, last = word:match("^(.-)([%.:])([%w_]*)$")
    if path then
      local t = env
      for part in path:gmatch("[^%.:]+") do
        if type(t) ~= "table" then return out end
        t = t[part]
      end
      if type(t) ~= "table" then return out end
      local keys = {}
      for k in pairs(t) do if type(k) == "string" then keys[#keys + 1] = k end end
      table.sort(keys)
      for _, k in ipairs(keys) do
        if k:sub(1, #last) == last then out[#out + 1] = path .. sep .. k end
      end
      return out
    end
    local names = {}
    for _, h in ipairs(HELPERS) do names[#names + 1] = h end
    for k in pairs(env) do
      if type(k) == "string" and not names[k] then names[#names + 1] = k end
    end
    table.sort(names)
    local seen = {}
    for _, n in ipairs(names) do
      if not seen[n] and n:sub(1, #word) == word then
        seen[n] = true
        local helper = false
        for _, h in ipairs(HELPERS) do helper = helper or h == n end
        out[#out + 1] = n .. (helper and "(" or "")
      end
    end
    return out
  end

  function S.close()
    if store then store:close() end
  end

  return S
end

return M
