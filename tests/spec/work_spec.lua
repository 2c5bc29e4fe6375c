-- work_spec.lua - the asynchronous primitives of work (DESIGN §5, §7 "Sandbox",
-- "Other results"): ctx.exec{argv..., stdin=, timeout=, env=} returns {code, signal,
-- stdout, stderr, truncated, timedOut} or nil, message; a timeout kills the child
-- (SIGKILL); output beyond 1 MiB per stream is dropped and reported; ctx.sleep,
-- ctx.exec and ctx.http raise outside ctx.block / ctx.background work.
-- Known engine bug (failing until fixed): at a timeout only the direct child is
-- killed, and ctx.exec returns only once both pipes reach their end, so a grandchild
-- that inherited them holds the call past its timeout ("returns at the timeout even
-- when the child's own children keep its output open").
--
-- Fixture: tests/fixtures/work/work.lua: a w/cmd {op = "exec", argv, stdin?, timeout?,
-- env?} runs ctx.exec in a block item and appends the result as w/result (stdout and
-- stderr themselves only when at most 4096 bytes; their lengths always); op =
-- "outside" calls the primitives from the hook itself and appends their errors.
local testing = require "sluice.testing"

local FIXTURES = "tests/fixtures/work"
local CAP = 1024 * 1024

local function exists(path)
  local f = io.open(path, "r")
  if f then f:close() end
  return f ~= nil
end

local function read(path)
  local f = assert(io.open(path, "r"))
  local s = f:read("a")
  f:close()
  return s
end

describe("work primitives", function()
  local p
  before_each(function()
    p = testing.processor { script = FIXTURES .. "/work.lua", schemas = { FIXTURES .. "/schemas" },
                            name = "work", streams = "x/*" }
  end)
  after_each(function() p:close() end)

  -- Runs one ctx.exec (the spec table: argv array plus stdin/timeout/env) in a block
  -- item and returns its result payload and the stored w/result event.
  local function exec(spec)
    local payload = { op = "exec", argv = spec.argv, stdin = spec.stdin, timeout = spec.timeout,
                      env = spec.env, after = spec.after }
    p:given("x/1", { type = "w/cmd", payload = payload })
    p:run()
    local out = p:emitted("x/1")
    assert.are.equal(1, #out, "one w/result")
    return out[1].payload, out[1]
  end

  describe("ctx.exec", function()
    it("returns code, signal, stdout, stderr, truncated and timedOut", function()
      local r, ev = exec { argv = { "sh", "-c", "echo out; echo err >&2; exit 3" } }
      assert.same({ ok = true, code = 3, signal = 0, stdout = "out\n", stderr = "err\n",
                    stdoutLen = 4, stderrLen = 4, truncated = false, timedOut = false }, r)
      -- an append from block work commits on its own, with the default key
      assert.are.equal("work@x/1:2#1", ev.idempotencyKey)
      p:expect_state("x/1", { count = 1, ns = "" })
    end)

    it("passes the argument vector as is (no shell)", function()
      local r = exec { argv = { "printf", "[%s]", "a b", "$HOME", "'q'" } }
      assert.are.equal("[a b][$HOME]['q']", r.stdout)
    end)

    it("kills the child with SIGKILL at the timeout; its later side effect never happens", function()
      local pidfile, late = p.dir .. "/pid", p.dir .. "/late"
      local r = exec { argv = { "sh", "-c", 'echo $$ > "$1"; sleep 1; echo late > "$2"', "sh", pidfile, late },
                       timeout = 200 }
      assert.is_true(r.ok)
      assert.are.equal(9, r.signal)
      assert.is_true(r.timedOut)
      -- The shell was killed (it is gone now) before it could write `late`: a shell
      -- that were still running would be alive, one that finished would have written it.
      local pid = read(pidfile):match("%d+")
      assert.truthy(pid)
      assert.is_not_true(os.execute("kill -0 " .. pid .. " 2>/dev/null"), "the child is still alive")
      assert.is_false(exists(late), "the child's side effect after the timeout happened")
    end)

    it("returns at the timeout even when the child's own children keep its output open", function()
      -- The shell starts a subshell that would write `late` after 1 s, then becomes
      -- `sleep 3`; the timeout kills the shell (now sleep) at 200 ms. ctx.exec must
      -- return then (or kill the whole group): right after it returned, `late` must
      -- not exist. If the call waits for the end of output instead, the orphaned
      -- subshell holds the pipes until it has written `late`.
      local late = p.dir .. "/late"
      local r = exec { argv = { "sh", "-c", '(sleep 1; echo late > "$1") & exec sleep 3', "sh", late },
                       timeout = 200, after = { "test", "-e", late } }
      assert.same({ 9, true }, { r.signal, r.timedOut })
      assert.are.equal(1, r.afterCode, "`late` was written before ctx.exec returned")
    end)

    it("takes the timeout as a duration string too", function()
      local r = exec { argv = { "sleep", "5" }, timeout = "150ms" }
      assert.same({ 9, true }, { r.signal, r.timedOut })
    end)

    it("does not time out a child that ends in time", function()
      local r = exec { argv = { "sh", "-c", "echo quick" }, timeout = 5000 }
      assert.same({ 0, 0, false, "quick\n" }, { r.code, r.signal, r.timedOut, r.stdout })
    end)

    it("caps stdout at 1 MiB and reports the truncation", function()
      local r = exec { argv = { "head", "-c", "1200000", "/dev/zero" } }
      assert.same({ code = 0, stdoutLen = CAP, truncated = true },
                  { code = r.code, stdoutLen = r.stdoutLen, truncated = r.truncated })
    end)

    it("caps stderr at 1 MiB on its own", function()
      local r = exec { argv = { "sh", "-c", "head -c 1100000 /dev/zero >&2; echo fine" } }
      assert.same({ stdout = "fine\n", stderrLen = CAP, truncated = true },
                  { stdout = r.stdout, stderrLen = r.stderrLen, truncated = r.truncated })
    end)

    it("does not report exactly 1 MiB as truncated", function()
      local r = exec { argv = { "head", "-c", tostring(CAP), "/dev/zero" } }
      assert.same({ stdoutLen = CAP, truncated = false }, { stdoutLen = r.stdoutLen, truncated = r.truncated })
    end)

    it("passes stdin", function()
      local r = exec { argv = { "cat" }, stdin = "hello\nworld\n" }
      assert.are.equal("hello\nworld\n", r.stdout)
    end)

    it("passes a stdin larger than a pipe buffer", function()
      local r = exec { argv = { "wc", "-c" }, stdin = string.rep("x", 300000) }
      assert.are.equal("300000", r.stdout:match("%d+"))
    end)

    it("gives the child an empty stdin when none is given", function()
      local r = exec { argv = { "cat" }, timeout = 5000 }
      assert.same({ 0, false, "" }, { r.code, r.timedOut, r.stdout })
    end)

    it("sets the environment from env", function()
      local r = exec { argv = { "/bin/sh", "-c", 'echo "$FOO:${HOME:-unset}"' }, env = { FOO = "bar" } }
      assert.are.equal("bar:unset\n", r.stdout)
    end)

    it("returns nil and a message for a missing program", function()
      local r = exec { argv = { "/nonexistent/sluice-test-program" } }
      assert.are.equal(false, r.ok)
      assert.are.equal("string", type(r.err))
      assert.truthy(r.err:find("/nonexistent/sluice-test-program", 1, true), r.err)
    end)

    it("returns nil and a message for a program not on PATH", function()
      local r = exec { argv = { "sluice-no-such-program-xyz" } }
      assert.are.equal(false, r.ok)
      assert.truthy(r.err:find("sluice-no-such-program-xyz", 1, true), r.err)
    end)
  end)

  describe("outside work", function()
    it("ctx.sleep, ctx.exec and ctx.http raise in a hook", function()
      p:given("x/1", { type = "w/cmd", payload = { op = "outside" } })
      p:run()
      local r = p:emitted("x/1")[1].payload
      for _, name in ipairs { "sleep", "exec", "http" } do
        assert.truthy(r[name]:find("ctx." .. name .. " is available only inside ctx.block or ctx.background work",
                                   1, true), name .. ": " .. r[name])
      end
    end)
  end)
end)
