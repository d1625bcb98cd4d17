# syntax=docker/dockerfile:1
# ultrald GPU training image: `yolo-ld` on an official CUDA build of PyTorch.
#
#   docker build -t ultrald .
#   docker run --gpus all --ipc=host -v /path/datasets:/datasets -v "$PWD/runs:/runs" ultrald \
#       train model=yolov8s.yaml teacher=/runs/teacher.pt data=/datasets/coco/data.yaml device=0,1,2,3
#
# Layout inside the container:
#   /datasets   volume; Ultralytics' datasets_dir (data yamls with a relative 'path:' resolve here)
#   /runs       volume; Ultralytics' runs_dir (runs/detect/train -> /runs/detect/train) and weights_dir (/runs/weights)
#   /workspace  the working dir; its 'runs' and 'datasets' link to the volumes: README's relative paths work as written
#   /opt/ultrald  the repository, installed with README's command (pip install -e .)
# It runs as the non-root user 'ultrald' (uid/gid 1000; change with --build-arg USER_UID=... --build-arg USER_GID=...).
# Any other uid works too (docker run --user "$(id -u):$(id -g)"): home, config dir and volume dirs are world-writable.

# torch 2.10.0 (pyproject: torch>=2.1) + CUDA 12.8 + cuDNN 9 on Ubuntu 22.04, Python in /opt/conda, as root.
FROM pytorch/pytorch:2.10.0-cuda12.8-cudnn9-runtime

LABEL org.opencontainers.image.title="ultrald" \
      org.opencontainers.image.description="Localization Distillation for Ultralytics YOLO: yolo-ld on CUDA" \
      org.opencontainers.image.licenses="AGPL-3.0"

# opencv-python (Ultralytics) loads libGL and GLib. Unpinned on purpose: the base image fixes the Ubuntu release, and
# apt then gives that release's current (security-patched) build; exact Debian versions vanish from the mirrors.
# hadolint ignore=DL3008
RUN apt-get update \
    && apt-get install -y --no-install-recommends libgl1 libglib2.0-0 \
    && rm -rf /var/lib/apt/lists/*

# The non-root user and the directories it writes; VOLUME comes last, after their owner and mode are set.
ARG USER_UID=1000
ARG USER_GID=1000
RUN groupadd --non-unique --gid "${USER_GID}" ultrald \
    && useradd --no-log-init --non-unique --uid "${USER_UID}" --gid "${USER_GID}" --create-home --shell /bin/bash \
        ultrald \
    && mkdir -p /datasets /runs /workspace \
    && ln -s /datasets /workspace/datasets \
    && ln -s /runs /workspace/runs \
    && chown ultrald:ultrald /datasets /runs /workspace \
    && chmod 0777 /datasets /runs /workspace

ENV PYTHONUNBUFFERED=1 \
    PYTHONDONTWRITEBYTECODE=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PIP_ROOT_USER_ACTION=ignore \
    MPLBACKEND=Agg

# Dependencies first: the metadata and the package's __init__ (which holds the version) are enough for the editable
# install, and this layer is rebuilt only when they change. The editable finder maps the 'ultrald' package to
# /opt/ultrald/ultrald, so the full source copied below is what runs. The base image's torch and torchvision (its CUDA
# build) are held as constraints, so no dependency can swap them for another build from the index.
WORKDIR /opt/ultrald
COPY pyproject.toml README.md ./
COPY ultrald/__init__.py ultrald/
RUN python -c "import importlib.metadata as m; [print(f'{p}=={m.version(p)}') for p in ('torch', 'torchvision')]" \
        > /tmp/base-torch.txt \
    && pip install --no-cache-dir --constraint /tmp/base-torch.txt -e . \
    && rm /tmp/base-torch.txt
COPY . .

# Ultralytics keeps its settings in YOLO_CONFIG_DIR/Ultralytics: point datasets, runs and weights (where its AMP check
# looks for yolo26n.pt) at the volumes, as the user that runs, then check that the full package imports.
ENV HOME=/home/ultrald \
    YOLO_CONFIG_DIR=/home/ultrald/.config
USER ${USER_UID}:${USER_GID}
WORKDIR /workspace
RUN YOLO_OFFLINE=1 yolo settings datasets_dir=/datasets runs_dir=/runs weights_dir=/runs/weights \
    && YOLO_OFFLINE=1 yolo-ld version \
    && chmod -R a+rwX "${HOME}"

VOLUME ["/datasets", "/runs"]
ENTRYPOINT ["yolo-ld"]
CMD ["help"]
