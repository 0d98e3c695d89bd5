"""`detect serve`: the one predictor behind a REST API and a browser viewer.

settings.py    ServeSettings: bind address, upload cap, pixel cap, token, CORS, queue and batches
sniff.py       what an upload is, from its bytes; its declared size, before any decoding
uploads.py     the request body (raw or multipart) read with the size cap, parsed in memory
pool.py        the queue and batcher: a request is queued while its expected wait is short, else
               refused at once (503 + Retry-After); requests queued together share a batch
predict.py     a batch of uploads -> their boxes.json entries, through the Detector's steps
               (prepare each, run once, finalize each), each entry schema-validated; a
               classifier's Grad-CAM overlay on request
model_card.py  GET /v1/model from the checkpoint
app.py         create_app: the FastAPI routes, errors as one-line JSON, security headers
server.py      run_server: load and warm up the model once, then uvicorn on 127.0.0.1 by default
static/viewer.html  the viewer: one offline page, no CDN, no build step
"""

from detect.extras import require

require("serve", "detect serve")  # FastAPI, uvicorn, python-multipart: the serve extra
