"""Deployment: an inference folder from a checkpoint, answered by Paddle Inference (or onnxruntime).

    python -m deploy export  --MODEL trar --DATASET demo --CKPT_PATH ckpts/ckpt_x/epoch10.pdparams --out export/trar
    python -m deploy predict --model export/trar --question "what color is the circle?" --features 123.npy
    python -m deploy onnx    --MODEL trar --DATASET demo --CKPT_PATH ckpts/ckpt_x/epoch10.pdparams \
        --out export/trar_onnx
    python -m deploy bench   --MODEL trar --DATASET vqa

bundle.py   the folder's files and manifest, question encoding and feature loading (numpy, no framework)
export.py   Paddle static export (the tracing and saving itself: backends/paddle/export.py), run.py --RUN=export
            lands here
predict.py  the Paddle Inference predictor (paddle.inference.Config + create_predictor) and onnxruntime runner
onnx.py     ONNX export through torch.onnx from the torch backend (backends/torch/export.py), or paddle2onnx
            (backends/paddle/export.py)
timing.py   latency / throughput timing, predictor vs dynamic graph
"""
