-- wrk script: GET /hello pipelined DEPTH deep (default 8): every write
-- carries DEPTH requests and wrk sends the next batch once all DEPTH
-- responses are in. wrk counts each response as one request.
--   wrk -s pipeline.lua URL [-- DEPTH]
local batch

function init(args)
    local depth = tonumber(args[1]) or 8
    local parts = {}
    for i = 1, depth do
        parts[i] = wrk.format("GET", "/hello")
    end
    batch = table.concat(parts)
end

function request()
    return batch
end
