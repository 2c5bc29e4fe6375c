-- webhook.lua - delivers each webhook/requested {url, body} with an HTTP POST in the
-- background and appends webhook/delivered {requestOffset, status} once.
--
-- The pattern for work that must survive a restart (the engine may die while a
-- request is in flight; background work never holds the checkpoint):
--   1. reduce records the request as "started" in the state, and processEventBatch
--      mirrors it in a projection table (ctx.db), in the batch's transaction;
--   2. the request is sent by ctx.background; its webhook/delivered append carries a
--      fixed idempotency key, so however often it is sent, one event records it;
--   3. webhook/delivered marks the request "delivered" (state and projection);
--   4. prepare, which runs once when the engine starts, re-issues every request the
--      projection still shows as started and that has no live execution in this
--      process (`live`, module-level, is per process).
local live = {}

local function deliver(ctx, stream, offset, url, body)
  local key = stream .. ":" .. offset
  if live[key] then return end
  live[key] = true
  ctx.background(function()
    local response, err = ctx.http { method = "POST", url = url, body = body or "",
                                     headers = { ["content-type"] = "application/json" },
                                     timeout = "10s" }
    live[key] = nil
    if not response then error("webhook " .. key .. ": " .. err) end
    ctx.append("webhook/delivered", { requestOffset = offset, status = response.status },
               { stream = stream, idempotencyKey = "webhook-delivered:" .. offset })
  end)
end

local function with_request(state, offset, status)
  local requests = {}
  for k, v in pairs(state.requests) do requests[k] = v end
  requests[tostring(offset)] = status
  return { requests = requests }
end

return {
  contract = "webhook",
  prepare = function(ctx)
    ctx.db:exec([[CREATE TABLE IF NOT EXISTS webhook_requests (
      stream TEXT NOT NULL, req_offset INTEGER NOT NULL, url TEXT NOT NULL, body TEXT,
      status TEXT NOT NULL, PRIMARY KEY (stream, req_offset))]])
    for _, row in ipairs(ctx.db:query(
        "SELECT stream, req_offset, url, body FROM webhook_requests WHERE status = 'started'")) do
      deliver(ctx, row.stream, row.req_offset, row.url, row.body ~= sluice.null and row.body or nil)
    end
  end,
  reduce = {
    ["webhook/requested"] = function(state, event)
      return with_request(state, event.offset, "started")
    end,
    ["webhook/delivered"] = function(state, event)
      return with_request(state, event.payload.requestOffset, "delivered")
    end,
  },
  processEventBatch = function(batch, ctx)
    for _, r in ipairs(batch.reduced) do
      local e = r.event
      if e.type == "webhook/requested" then
        ctx.db:exec("INSERT OR REPLACE INTO webhook_requests VALUES (?, ?, ?, ?, 'started')",
                    { e.stream, e.offset, e.payload.url, e.payload.body })
        if r.sideEffects then deliver(ctx, e.stream, e.offset, e.payload.url, e.payload.body) end
      else
        ctx.db:exec("UPDATE webhook_requests SET status = 'delivered'"
                    .. " WHERE stream = ? AND req_offset = ?", { e.stream, e.payload.requestOffset })
      end
    end
  end,
}
