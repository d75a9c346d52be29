// DistillKit as one import: `import DistillKit` brings the whole public API, from tensors and
// layers to data, ONNX and distillation (see the README's "DistillKit as a library").
@_exported import DistillData
@_exported import DistillExport
@_exported import DistillNN
@_exported import DistillONNX
@_exported import DistillTensor
@_exported import DistillText
@_exported import DistillTraining
