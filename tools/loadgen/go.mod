module llmserve.io/tools/loadgen

go 1.26.0
