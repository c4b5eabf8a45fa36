# One image per package: `docker buildx bake` builds all five, `docker buildx bake cookbook-infer` one.
# Dockerfiles: containers/<target>/Dockerfile; the build context is the repository root.
# Override a variable from the environment: `REGISTRY=ghcr.io/acme TAG=0.1.0 docker buildx bake --push`.

variable "REGISTRY" {
  # Registry and namespace prefixed to every image name (empty: local names such as cookbook-data:latest).
  default = ""
}

variable "TAG" {
  default = "latest"
}

variable "INFER_VLLM" {
  # "true" adds vLLM (the cookbook-infer[vllm] extra) to the cookbook-infer image, tagged <TAG>-vllm.
  default = "false"
}

function "image" {
  params = [name, tag]
  result = "${REGISTRY != "" ? "${REGISTRY}/" : ""}${name}:${tag}"
}

group "default" {
  targets = ["cookbook-data", "cookbook-infer", "cookbook-reward", "cookbook-train", "cookbook-eval"]
}

target "_common" {
  context   = "."
  platforms = ["linux/amd64"]
}

target "cookbook-data" {
  inherits   = ["_common"]
  dockerfile = "containers/cookbook-data/Dockerfile"
  tags       = [image("cookbook-data", TAG)]
}

target "cookbook-infer" {
  inherits   = ["_common"]
  dockerfile = "containers/cookbook-infer/Dockerfile"
  args = {
    VLLM_EXTRA = INFER_VLLM == "true" ? "--extra vllm" : ""
  }
  tags = [image("cookbook-infer", INFER_VLLM == "true" ? "${TAG}-vllm" : TAG)]
}

target "cookbook-reward" {
  inherits   = ["_common"]
  dockerfile = "containers/cookbook-reward/Dockerfile"
  tags       = [image("cookbook-reward", TAG)]
}

target "cookbook-train" {
  inherits   = ["_common"]
  dockerfile = "containers/cookbook-train/Dockerfile"
  tags       = [image("cookbook-train", TAG)]
}

target "cookbook-eval" {
  inherits   = ["_common"]
  dockerfile = "containers/cookbook-eval/Dockerfile"
  tags       = [image("cookbook-eval", TAG)]
}
