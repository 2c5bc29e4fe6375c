{"type":"t/x","payload":{"n":1}}
{"type":"t/x","payload":{"n":2}}
{"type":"t/x","payload":[1]}
