-- wrk script: GET /alloc/N with N cycling 1, 10, 50 (KiB), one request per
-- write, so a third of the requests each touch 1, 10 and 50 KiB.
local reqs = {}
local next_i = 0

function init(args)
    for i, kib in ipairs({ 1, 10, 50 }) do
        reqs[i] = wrk.format("GET", "/alloc/" .. kib)
    end
end

function request()
    next_i = next_i % #reqs + 1
    return reqs[next_i]
end
