// GENERATED FILE: do not edit. Golden values from PyTorch 2.13.0+cpu for the DistillNN tests.
// Regenerate from the repository root with:
//     /root/.venvs/torchref/bin/python scripts/golden/make_nn_golden.py
// Each case carries the PyTorch snippet that produced it; `pattern` and `imageInput` in
// NNTestSupport.swift reproduce the script's deterministic weights and inputs exactly.

import Testing

enum NNGolden {
    /// Optimizer trajectories: parameters after each of `optimizerGradients.count` steps.
    struct OptimizerCase: Sendable, CustomTestStringConvertible {
        let name: String, kind: String
        let learningRate: Float, momentum: Float, nesterov: Bool, weightDecay: Float
        let snippet: String
        /// [step][parameter][element]
        let trajectory: [[[Float]]]
        var testDescription: String { name }
    }

    /// Learning rates from torch.optim.lr_scheduler, read before each optimizer step.
    struct ScheduleCase: Sendable, CustomTestStringConvertible {
        let kind: String, base: Float, stepSize: Int, gamma: Float, totalSteps: Int, minimum: Float, warmupSteps: Int
        let snippet: String
        let rates: [Double]
        var testDescription: String { kind }
    }

    /// torch.nn.utils.clip_grad_norm_.
    struct ClipCase: Sendable, CustomTestStringConvertible {
        let maxNorm: Float, shapes: [[Int]], gradients: [[Float]]
        let snippet: String
        let totalNorm: Float, clipped: [[Float]]
        var testDescription: String { "max norm \(maxNorm)" }
    }

    /// Batch-norm after two training steps on `pattern` inputs (first: 2·pattern + 0.5, second: 1.5·pattern − 0.3).
    struct BatchNormCase: Sendable, CustomTestStringConvertible {
        let dims: Int, shape: [Int], firstPattern: Int, secondPattern: Int, weight: [Float], bias: [Float]
        let snippet: String
        let secondOutput: [Float], runningMean: [Float], runningVar: [Float], evalOutput: [Float]
        var testDescription: String { "BatchNorm\(dims)d \(shape)" }
    }

    /// A ModelZoo preset's torch.nn.Sequential twin: state dict (sorted names), and logits for
    /// `imageInput` with every tensor set by `pattern` (trainLogits empty without batch-norm).
    struct ZooCase: Sendable, CustomTestStringConvertible {
        let spec: String, parameterCount: Int
        let snippet: String
        let names: [String], shapes: [[Int]], buffers: [String]
        let evalLogits: [Float], trainLogits: [Float]
        var testDescription: String { spec }
    }

    static let optimizerShapes: [[Int]] = [[2, 3], [3]]
    static let optimizerInitial: [[Float]] = [[0.5, -1.20000005, 0.300000012, 2, -0.699999988, 1.10000002], [0.0500000007, -0.400000006, 0.899999976]]
    /// [step][parameter][element]
    static let optimizerGradients: [[[Float]]] = [
        [[0.300000012, -0.200000003, 0.5, -1, 0.800000012, 0.100000001], [0.25, -0.600000024, 0.0500000007]],
        [[-0.400000006, 0.100000001, 0.600000024, -0.300000012, 0.200000003, 0.899999976], [0.699999988, 0.200000003, -0.150000006]],
        [[0.0500000007, 0.349999994, -0.25, 0.600000024, -0.5, 0.400000006], [-0.300000012, 0.449999988, 0.600000024]],
        [[0.200000003, -0.899999976, 0.150000006, 0.100000001, 0.300000012, -0.200000003], [0.100000001, -0.0500000007, 0.349999994]],
    ]

    static let optimizerCases: [OptimizerCase] = [
        OptimizerCase(
            name: "sgd", kind: "sgd", learningRate: 0.100000001, momentum: 0,
            nesterov: false, weightDecay: 0,
            snippet: #"""
        F = lambda v: float(np.float32(v))  # DistillKit's Float hyperparameters
        params = [torch.tensor(v, dtype=torch.float32).reshape(s).requires_grad_()
                  for v, s in zip(OPT_INITIAL, OPT_SHAPES)]
        opt = torch.optim.SGD(params, lr=F(0.1))
        for grads in OPT_GRADS:
            for p, g in zip(params, grads): p.grad = torch.tensor(g).reshape(p.shape)
            opt.step()
            trajectory.append([p.detach().flatten().tolist() for p in params])
        """#,
            trajectory: [
                [[0.469999999, -1.18000007, 0.25, 2.0999999, -0.779999971, 1.09000003], [0.0250000004, -0.340000004, 0.894999981]],
                [[0.50999999, -1.19000006, 0.189999998, 2.12999988, -0.799999952, 1], [-0.0449999981, -0.360000014, 0.909999967]],
                [[0.504999995, -1.22500002, 0.215000004, 2.06999993, -0.74999994, 0.959999979], [-0.0149999969, -0.405000001, 0.849999964]],
                [[0.484999985, -1.13499999, 0.200000003, 2.05999994, -0.779999971, 0.979999959], [-0.0249999966, -0.400000006, 0.814999938]],
            ]),
        OptimizerCase(
            name: "sgd momentum", kind: "sgd", learningRate: 0.100000001, momentum: 0.899999976,
            nesterov: false, weightDecay: 0,
            snippet: #"""
        F = lambda v: float(np.float32(v))  # DistillKit's Float hyperparameters
        params = [torch.tensor(v, dtype=torch.float32).reshape(s).requires_grad_()
                  for v, s in zip(OPT_INITIAL, OPT_SHAPES)]
        opt = torch.optim.SGD(params, lr=F(0.1), momentum=F(0.9))
        for grads in OPT_GRADS:
            for p, g in zip(params, grads): p.grad = torch.tensor(g).reshape(p.shape)
            opt.step()
            trajectory.append([p.detach().flatten().tolist() for p in params])
        """#,
            trajectory: [
                [[0.469999999, -1.18000007, 0.25, 2.0999999, -0.779999971, 1.09000003], [0.0250000004, -0.340000004, 0.894999981]],
                [[0.48300001, -1.17200005, 0.144999996, 2.22000003, -0.871999979, 0.991000056], [-0.0674999952, -0.305999994, 0.905499995]],
                [[0.489700019, -1.19980001, 0.075500004, 2.26800013, -0.904799998, 0.861900091], [-0.120749988, -0.3204, 0.854950011]],
                [[0.475730002, -1.13481998, -0.00204999116, 2.30120015, -0.964320004, 0.765710115], [-0.178674981, -0.328359991, 0.774455011]],
            ]),
        OptimizerCase(
            name: "sgd nesterov", kind: "sgd", learningRate: 0.100000001, momentum: 0.899999976,
            nesterov: true, weightDecay: 0,
            snippet: #"""
        F = lambda v: float(np.float32(v))  # DistillKit's Float hyperparameters
        params = [torch.tensor(v, dtype=torch.float32).reshape(s).requires_grad_()
                  for v, s in zip(OPT_INITIAL, OPT_SHAPES)]
        opt = torch.optim.SGD(params, lr=F(0.1), momentum=F(0.9), nesterov=True)
        for grads in OPT_GRADS:
            for p, g in zip(params, grads): p.grad = torch.tensor(g).reshape(p.shape)
            opt.step()
            trajectory.append([p.detach().flatten().tolist() for p in params])
        """#,
            trajectory: [
                [[0.442999989, -1.16200006, 0.205000013, 2.19000006, -0.851999998, 1.08099997], [0.00250000064, -0.286000013, 0.890499949]],
                [[0.494699985, -1.16480005, 0.0505000167, 2.32800007, -0.95480001, 0.901899993], [-0.150749996, -0.275400013, 0.914949954]],
                [[0.495729983, -1.22482002, 0.0129500227, 2.31120014, -0.934320033, 0.745710015], [-0.168674991, -0.333360016, 0.809454978]],
                [[0.463156968, -1.07633805, -0.0718449727, 2.3310802, -1.01788807, 0.679139018], [-0.230807483, -0.335524023, 0.702009499]],
            ]),
        OptimizerCase(
            name: "sgd weight decay", kind: "sgd", learningRate: 0.100000001, momentum: 0,
            nesterov: false, weightDecay: 0.00999999978,
            snippet: #"""
        F = lambda v: float(np.float32(v))  # DistillKit's Float hyperparameters
        params = [torch.tensor(v, dtype=torch.float32).reshape(s).requires_grad_()
                  for v, s in zip(OPT_INITIAL, OPT_SHAPES)]
        opt = torch.optim.SGD(params, lr=F(0.1), weight_decay=F(0.01))
        for grads in OPT_GRADS:
            for p, g in zip(params, grads): p.grad = torch.tensor(g).reshape(p.shape)
            opt.step()
            trajectory.append([p.detach().flatten().tolist() for p in params])
        """#,
            trajectory: [
                [[0.469500005, -1.17880011, 0.24970001, 2.09800005, -0.779299974, 1.08889997], [0.0249500014, -0.339599997, 0.894099951]],
                [[0.509030521, -1.18762136, 0.189450309, 2.12590194, -0.798520684, 0.997811079], [-0.0450749472, -0.35926041, 0.908205867]],
                [[0.503521502, -1.22143376, 0.214260861, 2.06377602, -0.747722149, 0.956813276], [-0.01502987, -0.40390116, 0.847297668]],
                [[0.483017981, -1.13021231, 0.199046597, 2.05171227, -0.77697444, 0.975856483], [-0.0250148401, -0.398497254, 0.811450362]],
            ]),
        OptimizerCase(
            name: "sgd momentum weight decay", kind: "sgd", learningRate: 0.100000001, momentum: 0.899999976,
            nesterov: false, weightDecay: 0.00999999978,
            snippet: #"""
        F = lambda v: float(np.float32(v))  # DistillKit's Float hyperparameters
        params = [torch.tensor(v, dtype=torch.float32).reshape(s).requires_grad_()
                  for v, s in zip(OPT_INITIAL, OPT_SHAPES)]
        opt = torch.optim.SGD(params, lr=F(0.1), momentum=F(0.9), weight_decay=F(0.01))
        for grads in OPT_GRADS:
            for p, g in zip(params, grads): p.grad = torch.tensor(g).reshape(p.shape)
            opt.step()
            trajectory.append([p.detach().flatten().tolist() for p in params])
        """#,
            trajectory: [
                [[0.469500005, -1.17880011, 0.24970001, 2.09800005, -0.779299974, 1.08889997], [0.0249500014, -0.339599997, 0.894099951]],
                [[0.481580496, -1.16854131, 0.144180313, 2.21410203, -0.86989069, 0.987821102], [-0.0676199496, -0.304900408, 0.902895868]],
                [[0.486971378, -1.19313991, 0.0740684047, 2.25637984, -0.900552452, 0.85586226], [-0.120865278, -0.318365872, 0.849909306]],
                [[0.471336186, -1.12408543, -0.00410637818, 2.2821734, -0.957247436, 0.756243467], [-0.178665206, -0.325166404, 0.766371489]],
            ]),
        OptimizerCase(
            name: "adam", kind: "adam", learningRate: 0.100000001, momentum: 0,
            nesterov: false, weightDecay: 0,
            snippet: #"""
        F = lambda v: float(np.float32(v))  # DistillKit's Float hyperparameters
        params = [torch.tensor(v, dtype=torch.float32).reshape(s).requires_grad_()
                  for v, s in zip(OPT_INITIAL, OPT_SHAPES)]
        opt = torch.optim.Adam(params, lr=F(0.1), betas=(F(0.9), F(0.999)), eps=F(1e-8))
        for grads in OPT_GRADS:
            for p, g in zip(params, grads): p.grad = torch.tensor(g).reshape(p.shape)
            opt.step()
            trajectory.append([p.detach().flatten().tolist() for p in params])
        """#,
            trajectory: [
                [[0.400000006, -1.10000002, 0.200000018, 2.0999999, -0.799999952, 1], [-0.0500000007, -0.300000012, 0.800000012]],
                [[0.419351041, -1.07336628, 0.0999386981, 2.18556952, -0.88305974, 0.918645084], [-0.142608956, -0.259978145, 0.849418998]],
                [[0.427874386, -1.11613607, 0.0457647368, 2.21105218, -0.904802501, 0.835301638], [-0.185067505, -0.271836698, 0.797373831]],
                [[0.412848324, -1.0780344, -0.00835310295, 2.22703886, -0.939088285, 0.779904485], [-0.226780027, -0.277790517, 0.731683791]],
            ]),
        OptimizerCase(
            name: "adam lr 0.01", kind: "adam", learningRate: 0.00999999978, momentum: 0,
            nesterov: false, weightDecay: 0,
            snippet: #"""
        F = lambda v: float(np.float32(v))  # DistillKit's Float hyperparameters
        params = [torch.tensor(v, dtype=torch.float32).reshape(s).requires_grad_()
                  for v, s in zip(OPT_INITIAL, OPT_SHAPES)]
        opt = torch.optim.Adam(params, lr=F(0.01), betas=(F(0.9), F(0.999)), eps=F(1e-8))
        for grads in OPT_GRADS:
            for p, g in zip(params, grads): p.grad = torch.tensor(g).reshape(p.shape)
            opt.step()
            trajectory.append([p.detach().flatten().tolist() for p in params])
        """#,
            trajectory: [
                [[0.49000001, -1.19000006, 0.290000021, 2.00999999, -0.709999979, 1.09000003], [0.0399999991, -0.390000015, 0.889999986]],
                [[0.491935104, -1.18733668, 0.279993892, 2.01855707, -0.718305945, 1.0818646], [0.0307391044, -0.385997832, 0.894941866]],
                [[0.492787451, -1.19161367, 0.274576485, 2.02110529, -0.720480204, 1.0735302], [0.0264932495, -0.387183696, 0.889737368]],
                [[0.491284847, -1.18780351, 0.269164711, 2.02270389, -0.723908782, 1.06799054], [0.0223219972, -0.387779087, 0.88316834]],
            ]),
        OptimizerCase(
            name: "adam weight decay", kind: "adam", learningRate: 0.100000001, momentum: 0,
            nesterov: false, weightDecay: 0.00999999978,
            snippet: #"""
        F = lambda v: float(np.float32(v))  # DistillKit's Float hyperparameters
        params = [torch.tensor(v, dtype=torch.float32).reshape(s).requires_grad_()
                  for v, s in zip(OPT_INITIAL, OPT_SHAPES)]
        opt = torch.optim.Adam(params, lr=F(0.1), betas=(F(0.9), F(0.999)), eps=F(1e-8), weight_decay=F(0.01))
        for grads in OPT_GRADS:
            for p, g in zip(params, grads): p.grad = torch.tensor(g).reshape(p.shape)
            opt.step()
            trajectory.append([p.detach().flatten().tolist() for p in params])
        """#,
            trajectory: [
                [[0.400000006, -1.10000002, 0.200000018, 2.0999999, -0.799999952, 1], [-0.0500000007, -0.300000012, 0.800000012]],
                [[0.418091655, -1.06703901, 0.0999337435, 2.18482733, -0.882641554, 0.918024123], [-0.142641664, -0.259384811, 0.843024611]],
                [[0.425106138, -1.10565579, 0.0455504209, 2.20748281, -0.903004885, 0.834115744], [-0.18496941, -0.270528674, 0.789233208]],
                [[0.40853399, -1.06562257, -0.00873082876, 2.2200253, -0.935818434, 0.777511895], [-0.226452053, -0.27569899, 0.722162008]],
            ]),
        OptimizerCase(
            name: "adamw", kind: "adamw", learningRate: 0.100000001, momentum: 0,
            nesterov: false, weightDecay: 0.00999999978,
            snippet: #"""
        F = lambda v: float(np.float32(v))  # DistillKit's Float hyperparameters
        params = [torch.tensor(v, dtype=torch.float32).reshape(s).requires_grad_()
                  for v, s in zip(OPT_INITIAL, OPT_SHAPES)]
        opt = torch.optim.AdamW(params, lr=F(0.1), betas=(F(0.9), F(0.999)), eps=F(1e-8), weight_decay=F(0.01))
        for grads in OPT_GRADS:
            for p, g in zip(params, grads): p.grad = torch.tensor(g).reshape(p.shape)
            opt.step()
            trajectory.append([p.detach().flatten().tolist() for p in params])
        """#,
            trajectory: [
                [[0.399500012, -1.09880006, 0.199700028, 2.09800005, -0.799299955, 0.998900115], [-0.0500500016, -0.299600005, 0.799100041]],
                [[0.418451548, -1.07106757, 0.0994390175, 2.18147159, -0.881560445, 0.916546285], [-0.142608911, -0.259278536, 0.847719908]],
                [[0.426556438, -1.11276627, 0.0451656207, 2.20477271, -0.902421653, 0.832286358], [-0.184924856, -0.270877808, 0.794827044]],
                [[0.411103815, -1.07355189, -0.00899738446, 2.21855474, -0.935805023, 0.776056945], [-0.226452455, -0.276560754, 0.728342175]],
            ]),
    ]

    static let scheduleCases: [ScheduleCase] = [
        ScheduleCase(
            kind: "step", base: 0.100000001, stepSize: 3, gamma: 0.5,
            totalSteps: 1, minimum: 0, warmupSteps: 0,
            snippet: "StepLR(opt, step_size=3, gamma=0.5)  # base lr 0.1; lr read before each opt.step()",
            rates: [0.1, 0.1, 0.1, 0.05, 0.05, 0.05, 0.025, 0.025, 0.025, 0.0125, 0.0125, 0.0125]),
        ScheduleCase(
            kind: "cosine", base: 0.100000001, stepSize: 1, gamma: 1,
            totalSteps: 10, minimum: 0.00100000005, warmupSteps: 0,
            snippet: "CosineAnnealingLR(opt, T_max=10, eta_min=0.001)  # base lr 0.1; steps 0...T_max",
            rates: [0.1, 0.09757729755661011, 0.0905463412215599, 0.07959536998847742, 0.0657963412215599, 0.0505, 0.03520365877844011, 0.02140463001152259, 0.010453658778440109, 0.0034227024433899004, 0.001]),
        ScheduleCase(
            kind: "warmup-constant", base: 0.100000001, stepSize: 1, gamma: 1,
            totalSteps: 1, minimum: 0, warmupSteps: 5,
            snippet: "LinearLR(opt, start_factor=1/5, end_factor=1.0, total_iters=4)  # base lr 0.1",
            rates: [0.020000000000000004, 0.04000000000000001, 0.06000000000000001, 0.08000000000000002, 0.10000000000000002, 0.10000000000000002, 0.10000000000000002, 0.10000000000000002, 0.10000000000000002]),
        ScheduleCase(
            kind: "warmup-step", base: 0.100000001, stepSize: 3, gamma: 0.5,
            totalSteps: 1, minimum: 0, warmupSteps: 5,
            snippet: "ChainedScheduler([LinearLR(opt, start_factor=1/5, total_iters=4), StepLR(opt, step_size=3, gamma=0.5)])",
            rates: [0.020000000000000004, 0.04000000000000001, 0.06000000000000001, 0.04000000000000001, 0.05000000000000001, 0.05000000000000001, 0.025000000000000005, 0.025000000000000005, 0.025000000000000005, 0.012500000000000002, 0.012500000000000002, 0.012500000000000002]),
    ]

    static let clipCases: [ClipCase] = [
        ClipCase(
            maxNorm: 1, shapes: [[2, 3], [4]], gradients: [[0.300000012, -1.20000005, 0.800000012, 2, -0.5, 0.100000001], [1.5, -0.699999988, 0.25, -2.20000005]],
            snippet: #"""
        params = [torch.zeros(s, requires_grad=True) for s in shapes]
        for p, g in zip(params, grads): p.grad = torch.tensor(g).reshape(p.shape)
        norm = torch.nn.utils.clip_grad_norm_(params, max_norm=1.0)
        """#,
            totalNorm: 3.75133324, clipped: [[0.0799715519, -0.319886208, 0.213257462, 0.53314364, -0.13328591, 0.0266571827], [0.39985773, -0.186600268, 0.0666429549, -0.586458027]]),
        ClipCase(
            maxNorm: 10, shapes: [[2, 3], [4]], gradients: [[0.300000012, -1.20000005, 0.800000012, 2, -0.5, 0.100000001], [1.5, -0.699999988, 0.25, -2.20000005]],
            snippet: #"""
        params = [torch.zeros(s, requires_grad=True) for s in shapes]
        for p, g in zip(params, grads): p.grad = torch.tensor(g).reshape(p.shape)
        norm = torch.nn.utils.clip_grad_norm_(params, max_norm=10.0)
        """#,
            totalNorm: 3.75133324, clipped: [[0.300000012, -1.20000005, 0.800000012, 2, -0.5, 0.100000001], [1.5, -0.699999988, 0.25, -2.20000005]]),
    ]

    static let batchNormCases: [BatchNormCase] = [
        BatchNormCase(
            dims: 1, shape: [6, 3], firstPattern: 12, secondPattern: 22, weight: [1, 0.5, -1.5], bias: [0.100000001, -0.200000003, 0.300000012],
            snippet: #"""
        bn = torch.nn.BatchNorm1d(3)  # momentum 0.1, eps 1e-5; training mode
        bn.weight.data = torch.tensor(weight); bn.bias.data = torch.tensor(bias)
        bn(first)
        second_out = bn(second)
        bn.eval(); eval_out = bn(first)
        """#,
            secondOutput: [0.674140215, -0.513667405, 2.2272439, -1.2286061, 0.358365029, -0.668887615, 1.05137312, -0.369385689, 1.74806571, -0.851373196, 0.502646744, -1.14806569, 1.42860603, -0.225103959, 1.26888764, -0.474140167, -0.952854693, -1.62724376],
            runningMean: [-0.0544940419, 0.00548610929, 0.0754761845], runningVar: [0.970816731, 1.07182157, 1.03425455],
            evalOutput: [0.888299942, -0.147071391, 1.13708901, -0.960292757, 0.906997263, -2.08203387, 1.25479662, 0.0273290556, 0.604470551, -0.593796194, -0.852339089, -2.61465263, 1.62129319, 0.201729506, 0.0718519762, -0.227299586, -0.67793864, -3.14727116]),
        BatchNormCase(
            dims: 2, shape: [2, 3, 2, 3], firstPattern: 13, secondPattern: 23, weight: [1, 0.5, -1.5], bias: [0.100000001, -0.200000003, 0.300000012],
            snippet: #"""
        bn = torch.nn.BatchNorm2d(3)  # momentum 0.1, eps 1e-5; training mode
        bn.weight.data = torch.tensor(weight); bn.bias.data = torch.tensor(bias)
        bn(first)
        second_out = bn(second)
        bn.eval(); eval_out = bn(first)
        """#,
            secondOutput: [-0.763181567, -1.27407825, 1.58427155, 1.07337499, 0.562478304, 0.051581677, -0.353011698, -0.61217171, -0.871331692, 0.578609288, 0.319449246, 0.0602892563, 0.331674635, 1.10706866, 1.88246274, 2.65785646, -1.68029547, -0.904901445, 0.148418292, -0.362478375, -0.873374999, -1.38427162, 1.47407818, 0.963181555, 0.109411083, -0.149748936, -0.408908933, -0.668069005, -0.927228987, 0.522711992, -1.05187154, -0.276477545, 0.498916447, 1.27431047, 2.04970455, -2.28844762],
            runningMean: [0.0098511884, 0.0193849206, -0.00611607172], runningVar: [1.03137398, 1.02890944, 1.01753318],
            evalOutput: [-0.00738546252, -0.605219543, -1.20305371, 2.14169145, 1.54385734, 0.946023226, -0.0804563165, -0.379731178, -0.67900604, 0.995368302, 0.6960935, 0.396818578, -0.635527551, 0.267301947, 1.17013144, 2.07296085, -2.97816324, -2.07533407, 1.05933821, 0.461504042, -0.136330068, -0.734164238, -1.33199823, 2.01274681, 0.453543901, 0.15426904, -0.145005807, -0.444280654, -0.743555546, 0.930818856, -2.24645853, -1.343629, -0.440799594, 0.462029874, 1.36485934, 2.26768875]),
    ]

    static let zooCases: [ZooCase] = [
        ZooCase(
            spec: "mlp:784-64-10", parameterCount: 50890,
            snippet: #"""
        model = torch_model('mlp:784-64-10')  # the torch.nn.Sequential equivalent (see make_nn_golden.py: torch_model)
        names = sorted(model.state_dict())
        model.load_state_dict({k: pattern_value(k, v.shape, names.index(k)) ...}, strict=False)
        x = torch.tensor(image_input(2 * 28 * 28)).reshape(2, 1, 28, 28)
        model.eval(); eval_logits = model(x)
        model.train(); train_logits = model(x)  # batch statistics (models with batch-norm only)
        """#,
            names: ["1.bias", "1.weight", "3.bias", "3.weight"],
            shapes: [[64], [64, 784], [10], [10, 64]],
            buffers: [],
            evalLogits: [-0.0689876825, -0.0558832996, 0.108620405, -0.0883954465, -0.206177428, 0.129068792, 0.0701048225, -0.0711192787, -0.0556454286, 0.118172184, -0.0305677038, -0.0363077819, 0.0736672133, -0.0890865847, -0.157230467, 0.110236213, 0.0516974106, -0.0708209425, -0.0207139719, 0.0423769616],
            trainLogits: []),
        ZooCase(
            spec: "cnn-small", parameterCount: 421642,
            snippet: #"""
        model = torch_model('cnn-small')  # the torch.nn.Sequential equivalent (see make_nn_golden.py: torch_model)
        names = sorted(model.state_dict())
        model.load_state_dict({k: pattern_value(k, v.shape, names.index(k)) ...}, strict=False)
        x = torch.tensor(image_input(2 * 28 * 28)).reshape(2, 1, 28, 28)
        model.eval(); eval_logits = model(x)
        model.train(); train_logits = model(x)  # batch statistics (models with batch-norm only)
        """#,
            names: ["0.bias", "0.weight", "3.bias", "3.weight", "7.bias", "7.weight", "9.bias", "9.weight"],
            shapes: [[32], [32, 1, 3, 3], [64], [64, 32, 3, 3], [128], [128, 3136], [10], [10, 128]],
            buffers: [],
            evalLogits: [-0.060962759, 0.193737909, -0.0621516928, -0.058350198, -0.0232658647, -0.223430544, 0.216416597, -0.039058581, 0.0485490374, -0.000587164424, -0.0572331324, 0.194729626, -0.0619445257, -0.0620230809, -0.0236985534, -0.222182959, 0.21711725, -0.0376363248, 0.0470327958, -0.00131092779],
            trainLogits: []),
        ZooCase(
            spec: "cnn-tiny", parameterCount: 9098,
            snippet: #"""
        model = torch_model('cnn-tiny')  # the torch.nn.Sequential equivalent (see make_nn_golden.py: torch_model)
        names = sorted(model.state_dict())
        model.load_state_dict({k: pattern_value(k, v.shape, names.index(k)) ...}, strict=False)
        x = torch.tensor(image_input(2 * 28 * 28)).reshape(2, 1, 28, 28)
        model.eval(); eval_logits = model(x)
        model.train(); train_logits = model(x)  # batch statistics (models with batch-norm only)
        """#,
            names: ["0.bias", "0.weight", "3.bias", "3.weight", "7.bias", "7.weight"],
            shapes: [[8], [8, 1, 3, 3], [16], [16, 8, 3, 3], [10], [10, 784]],
            buffers: [],
            evalLogits: [-0.0525616147, -0.0853955597, 0.0684265196, 0.0346246287, -0.0140287075, -0.0243592579, -0.0285071544, -0.0376973897, 0.125597209, 0.085553728, -0.0583020896, -0.0858530775, 0.0377795026, 0.0198909156, 0.0119567951, -0.00473900698, -0.018755544, -0.0412355699, 0.108341582, 0.071151346],
            trainLogits: []),
        ZooCase(
            spec: "lenet5", parameterCount: 61706,
            snippet: #"""
        model = torch_model('lenet5')  # the torch.nn.Sequential equivalent (see make_nn_golden.py: torch_model)
        names = sorted(model.state_dict())
        model.load_state_dict({k: pattern_value(k, v.shape, names.index(k)) ...}, strict=False)
        x = torch.tensor(image_input(2 * 28 * 28)).reshape(2, 1, 28, 28)
        model.eval(); eval_logits = model(x)
        model.train(); train_logits = model(x)  # batch statistics (models with batch-norm only)
        """#,
            names: ["0.bias", "0.weight", "11.bias", "11.weight", "3.bias", "3.weight", "7.bias", "7.weight", "9.bias", "9.weight"],
            shapes: [[6], [6, 1, 5, 5], [10], [10, 84], [16], [16, 6, 5, 5], [120], [120, 400], [84], [84, 120]],
            buffers: [],
            evalLogits: [0.123573005, -0.0368734635, -0.0741411224, -0.0414582193, 0.0079183206, 0.0377934352, 0.0162922591, 0.0669385195, 0.0130262617, -0.107738823, 0.123174593, -0.0363180228, -0.0737430826, -0.0416721515, 0.0080152303, 0.038379319, 0.0166593678, 0.0666577965, 0.0130243171, -0.107316956],
            trainLogits: []),
        ZooCase(
            spec: "resnet8", parameterCount: 77754,
            snippet: #"""
        model = torch_model('resnet8')  # the torch.nn.Sequential equivalent (see make_nn_golden.py: torch_model)
        names = sorted(model.state_dict())
        model.load_state_dict({k: pattern_value(k, v.shape, names.index(k)) ...}, strict=False)
        x = torch.tensor(image_input(2 * 28 * 28)).reshape(2, 1, 28, 28)
        model.eval(); eval_logits = model(x)
        model.train(); train_logits = model(x)  # batch statistics (models with batch-norm only)
        """#,
            names: ["0.weight", "1.bias", "1.num_batches_tracked", "1.running_mean", "1.running_var", "1.weight", "3.bn1.bias", "3.bn1.num_batches_tracked", "3.bn1.running_mean", "3.bn1.running_var", "3.bn1.weight", "3.bn2.bias", "3.bn2.num_batches_tracked", "3.bn2.running_mean", "3.bn2.running_var", "3.bn2.weight", "3.conv1.weight", "3.conv2.weight", "4.bn1.bias", "4.bn1.num_batches_tracked", "4.bn1.running_mean", "4.bn1.running_var", "4.bn1.weight", "4.bn2.bias", "4.bn2.num_batches_tracked", "4.bn2.running_mean", "4.bn2.running_var", "4.bn2.weight", "4.conv1.weight", "4.conv2.weight", "4.shortcut.0.weight", "4.shortcut.1.bias", "4.shortcut.1.num_batches_tracked", "4.shortcut.1.running_mean", "4.shortcut.1.running_var", "4.shortcut.1.weight", "5.bn1.bias", "5.bn1.num_batches_tracked", "5.bn1.running_mean", "5.bn1.running_var", "5.bn1.weight", "5.bn2.bias", "5.bn2.num_batches_tracked", "5.bn2.running_mean", "5.bn2.running_var", "5.bn2.weight", "5.conv1.weight", "5.conv2.weight", "5.shortcut.0.weight", "5.shortcut.1.bias", "5.shortcut.1.num_batches_tracked", "5.shortcut.1.running_mean", "5.shortcut.1.running_var", "5.shortcut.1.weight", "7.bias", "7.weight"],
            shapes: [[16, 1, 3, 3], [16], [], [16], [16], [16], [16], [], [16], [16], [16], [16], [], [16], [16], [16], [16, 16, 3, 3], [16, 16, 3, 3], [32], [], [32], [32], [32], [32], [], [32], [32], [32], [32, 16, 3, 3], [32, 32, 3, 3], [32, 16, 1, 1], [32], [], [32], [32], [32], [64], [], [64], [64], [64], [64], [], [64], [64], [64], [64, 32, 3, 3], [64, 64, 3, 3], [64, 32, 1, 1], [64], [], [64], [64], [64], [10], [10, 64]],
            buffers: ["1.num_batches_tracked", "1.running_mean", "1.running_var", "3.bn1.num_batches_tracked", "3.bn1.running_mean", "3.bn1.running_var", "3.bn2.num_batches_tracked", "3.bn2.running_mean", "3.bn2.running_var", "4.bn1.num_batches_tracked", "4.bn1.running_mean", "4.bn1.running_var", "4.bn2.num_batches_tracked", "4.bn2.running_mean", "4.bn2.running_var", "4.shortcut.1.num_batches_tracked", "4.shortcut.1.running_mean", "4.shortcut.1.running_var", "5.bn1.num_batches_tracked", "5.bn1.running_mean", "5.bn1.running_var", "5.bn2.num_batches_tracked", "5.bn2.running_mean", "5.bn2.running_var", "5.shortcut.1.num_batches_tracked", "5.shortcut.1.running_mean", "5.shortcut.1.running_var"],
            evalLogits: [-0.0260838196, 0.0430830792, 0.120722391, -0.0190427266, -0.0908427835, -0.0442808382, -0.0122816563, -0.0426421091, 0.0376804881, 0.136723056, -0.0262716413, 0.0401367284, 0.122113906, -0.0167796817, -0.0938973352, -0.0440400168, -0.00896784663, -0.0439065173, 0.0347004384, 0.138936669],
            trainLogits: [0.113626651, 0.259770215, -0.099917002, -0.0917222723, 0.0396096185, -0.00183898211, -0.267643631, 0.152452499, 0.172011301, -0.0770117566, -0.0108173043, 0.157209262, 0.0450383797, -0.0865244716, -0.109813772, 0.0516316444, -0.113631293, -0.0150328577, 0.119404703, 0.0711196885]),
        ZooCase(
            spec: "mobilenet-tiny", parameterCount: 13898,
            snippet: #"""
        model = torch_model('mobilenet-tiny')  # the torch.nn.Sequential equivalent (see make_nn_golden.py: torch_model)
        names = sorted(model.state_dict())
        model.load_state_dict({k: pattern_value(k, v.shape, names.index(k)) ...}, strict=False)
        x = torch.tensor(image_input(2 * 28 * 28)).reshape(2, 1, 28, 28)
        model.eval(); eval_logits = model(x)
        model.train(); train_logits = model(x)  # batch statistics (models with batch-norm only)
        """#,
            names: ["0.weight", "1.bias", "1.num_batches_tracked", "1.running_mean", "1.running_var", "1.weight", "10.bias", "10.num_batches_tracked", "10.running_mean", "10.running_var", "10.weight", "12.weight", "13.bias", "13.num_batches_tracked", "13.running_mean", "13.running_var", "13.weight", "15.weight", "16.bias", "16.num_batches_tracked", "16.running_mean", "16.running_var", "16.weight", "18.weight", "19.bias", "19.num_batches_tracked", "19.running_mean", "19.running_var", "19.weight", "22.bias", "22.weight", "3.weight", "4.bias", "4.num_batches_tracked", "4.running_mean", "4.running_var", "4.weight", "6.weight", "7.bias", "7.num_batches_tracked", "7.running_mean", "7.running_var", "7.weight", "9.weight"],
            shapes: [[16, 1, 3, 3], [16], [], [16], [16], [16], [32], [], [32], [32], [32], [64, 32, 1, 1], [64], [], [64], [64], [64], [64, 1, 3, 3], [64], [], [64], [64], [64], [128, 64, 1, 1], [128], [], [128], [128], [128], [10], [10, 128], [16, 1, 3, 3], [16], [], [16], [16], [16], [32, 16, 1, 1], [32], [], [32], [32], [32], [32, 1, 3, 3]],
            buffers: ["1.num_batches_tracked", "1.running_mean", "1.running_var", "10.num_batches_tracked", "10.running_mean", "10.running_var", "13.num_batches_tracked", "13.running_mean", "13.running_var", "16.num_batches_tracked", "16.running_mean", "16.running_var", "19.num_batches_tracked", "19.running_mean", "19.running_var", "4.num_batches_tracked", "4.running_mean", "4.running_var", "7.num_batches_tracked", "7.running_mean", "7.running_var"],
            evalLogits: [-0.128459454, 0.00796285272, 0.279393971, -0.197105944, 0.171178773, -0.141392156, -0.124232098, 0.0603104979, -0.126653537, 0.275868624, -0.128455117, 0.00797162205, 0.279371619, -0.197078303, 0.171165034, -0.141380623, -0.124225698, 0.0602962971, -0.126642272, 0.275845796],
            trainLogits: [-0.208546475, 0.0952961743, 0.180361181, -0.131630257, 0.15136902, -0.137425423, -0.134218127, 0.0101699904, -0.138127595, 0.295438796, -0.247012496, 0.07573089, 0.218989715, -0.130258679, 0.179872975, -0.169558674, -0.165479794, 0.0345040858, -0.116182476, 0.337079138]),
    ]

    /// `torch.nn.Linear(784, 64)` weight after `torch.manual_seed(0)`: max |w|, mean and standard deviation
    /// (the bound is 1/√784 = 1/28, and U(±b) has standard deviation b/√3 = 0.0206197).
    static let torchLinear784x64 = (maxAbs: 0.035713803, mean: 3.15290854e-05, std: 0.0205767471)
}
