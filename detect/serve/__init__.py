"""`detect serve`: the one predictor behind a REST API and a browser viewer.

settings.py    ServeSettings: bind address, upload cap, pixel cap, token, CORS, pool size
sniff.py       what an upload is, from its bytes; its declared size, before any decoding
uploads.py     the request body (raw or multipart) read with the size cap, parsed in memory
pool.py        the bounded worker pool: a full queue is refused at once (503 + Retry-After)
predict.py     one upload -> the boxes.json entry, through Predictor.predict_raw and
               detect.inference.api.finalize_prediction, the entry schema-validated
model_card.py  GET /v1/model from the checkpoint
app.py         create_app: the FastAPI routes, errors as one-line JSON, security headers
server.py      run_server: load the model once, then uvicorn on 127.0.0.1 by default
static/viewer.html  the viewer: one offline page, no CDN, no build step
"""

from detect.extras import require

require("serve", "detect serve")  # FastAPI, uvicorn, python-multipart: the serve extra
