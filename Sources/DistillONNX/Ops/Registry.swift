import DistillTensor
import Foundation

/// The ONNX operators DistillKit runs, each a function named exactly after its ONNX operator
/// (`ONNXOps.Conv`), taking the node's inputs and attributes and returning its outputs. Opset
/// differences (LogSoftmax's axis before and after 13, Unsqueeze's axes attribute becoming an
/// input, ...) are handled inside each function from `OpContext.opset`.
public enum ONNXOps {
    /// Implementations by operator (ai.onnx operators by name, ai.onnx.ml ones prefixed by
    /// "ai.onnx.ml:").
    static let kernels: [String: ONNXKernel] = [
        // Elementwise arithmetic (Math.swift)
        "Add": Add, "Sub": Sub, "Mul": Mul, "Div": Div, "Pow": Pow, "Mod": Mod,
        "Max": Max, "Min": Min, "Sum": Sum, "Mean": Mean,
        "Relu": Relu, "LeakyRelu": LeakyRelu, "PRelu": PRelu, "Sigmoid": Sigmoid, "Tanh": Tanh, "Erf": Erf, "Gelu": Gelu,
        "Elu": Elu, "Selu": Selu, "Celu": Celu, "HardSigmoid": HardSigmoid, "HardSwish": HardSwish, "Softplus": Softplus,
        "Softsign": Softsign, "ThresholdedRelu": ThresholdedRelu, "Shrink": Shrink, "Mish": Mish,
        "Exp": Exp, "Log": Log, "Sqrt": Sqrt, "Reciprocal": Reciprocal, "Neg": Neg, "Abs": Abs, "Sign": Sign,
        "Floor": Floor, "Ceil": Ceil, "Round": Round,
        "Sin": Sin, "Cos": Cos, "Tan": Tan, "Asin": Asin, "Acos": Acos, "Atan": Atan,
        "Sinh": Sinh, "Cosh": Cosh, "Asinh": Asinh, "Acosh": Acosh, "Atanh": Atanh,
        "Clip": Clip, "Cast": Cast, "CastLike": CastLike, "IsNaN": IsNaN, "IsInf": IsInf,
        "QuantizeLinear": QuantizeLinear, "DequantizeLinear": DequantizeLinear,  // Quantize.swift
        "Equal": Equal, "Less": Less, "Greater": Greater, "LessOrEqual": LessOrEqual, "GreaterOrEqual": GreaterOrEqual,
        "And": And, "Or": Or, "Xor": Xor, "Not": Not, "Where": Where,
        // Neural-network layers (NN.swift)
        "Conv": Conv, "MaxPool": MaxPool, "AveragePool": AveragePool, "GlobalAveragePool": GlobalAveragePool,
        "GlobalMaxPool": GlobalMaxPool, "BatchNormalization": BatchNormalization,
        "InstanceNormalization": InstanceNormalization, "LayerNormalization": LayerNormalization, "LRN": LRN,
        "Gemm": Gemm, "MatMul": MatMul, "Softmax": Softmax, "LogSoftmax": LogSoftmax, "Hardmax": Hardmax,
        "Dropout": Dropout, "ConvTranspose": ConvTranspose, "Resize": Resize, "Upsample": Upsample,
        "RNN": RNN, "GRU": GRU, "LSTM": LSTM, "Einsum": Einsum, "MeanVarianceNormalization": MeanVarianceNormalization,
        "NegativeLogLikelihoodLoss": NegativeLogLikelihoodLoss, "SoftmaxCrossEntropyLoss": SoftmaxCrossEntropyLoss,
        // Shapes and indexing (Shape.swift)
        "Reshape": Reshape, "Flatten": Flatten, "Transpose": Transpose, "Squeeze": Squeeze, "Unsqueeze": Unsqueeze,
        "Concat": Concat, "Split": Split, "Shape": Shape, "Size": Size, "Gather": Gather, "GatherElements": GatherElements,
        "Slice": Slice, "Pad": Pad, "Expand": Expand, "Tile": Tile, "Constant": Constant, "ConstantOfShape": ConstantOfShape,
        "Identity": Identity, "Range": Range, "DepthToSpace": DepthToSpace, "SpaceToDepth": SpaceToDepth, "Trilu": Trilu,
        // Reductions (Reduce.swift)
        "ReduceMean": ReduceMean, "ReduceSum": ReduceSum, "ReduceMax": ReduceMax, "ReduceMin": ReduceMin,
        "ReduceProd": ReduceProd, "ReduceL1": ReduceL1, "ReduceL2": ReduceL2, "ReduceSumSquare": ReduceSumSquare,
        "ReduceLogSum": ReduceLogSum, "ReduceLogSumExp": ReduceLogSumExp, "ArgMax": ArgMax, "ArgMin": ArgMin,
        "CumSum": CumSum,
        // Indexing (Indexing.swift)
        "OneHot": OneHot, "EyeLike": EyeLike, "TopK": TopK, "NonZero": NonZero, "GatherND": GatherND, "ScatterND": ScatterND,
        "ScatterElements": ScatterElements, "Scatter": Scatter, "Compress": Compress, "BitShift": BitShift,
        // Control flow: operators running sub-graphs (ControlFlowOps.swift)
        "If": If, "Loop": Loop, "Scan": Scan,
        // ONNX-ML: what scikit-learn's exporters emit (ML.swift)
        "ai.onnx.ml:TreeEnsembleClassifier": TreeEnsembleClassifier, "ai.onnx.ml:TreeEnsembleRegressor": TreeEnsembleRegressor,
        "ai.onnx.ml:LinearClassifier": LinearClassifier, "ai.onnx.ml:LinearRegressor": LinearRegressor,
        "ai.onnx.ml:Scaler": Scaler, "ai.onnx.ml:Normalizer": Normalizer,
        "ai.onnx.ml:ArrayFeatureExtractor": ArrayFeatureExtractor, "ai.onnx.ml:Binarizer": Binarizer,
        // Support-vector machines (SVM.swift)
        "ai.onnx.ml:SVMClassifier": SVMClassifier, "ai.onnx.ml:SVMRegressor": SVMRegressor,
    ]

    /// Every supported operator, sorted (ML ones as "ai.onnx.ml.Name").
    public static var supportedOperators: [String] {
        kernels.keys.map { $0.replacingOccurrences(of: ":", with: ".") }.sorted()
    }

    static func kernel(for node: Node) -> ONNXKernel? { kernels[node.key] }

    /// Why `node` cannot run (checked at load time, before anything runs), or nil when it can.
    static func unsupportedReason(_ node: Node) -> String? {
        if node.domain == "ai.onnx.ml" && node.opType == "ZipMap" {
            return "ZipMap turns probabilities into a list of dictionaries, which DistillKit does not represent; export without it (skl2onnx: options={id(model): {'zipmap': False}} or options={'zipmap': False})"
        }
        guard kernel(for: node) != nil else {
            if node.attributes.hasSubgraph { return "operator not implemented (of the operators running sub-graphs, DistillKit runs If, Loop and Scan)" }
            return "operator not implemented"
        }
        if node.opType == "Constant" && node.attributes.has("sparse_value") { return "sparse constants are not supported" }
        return nil
    }
}
