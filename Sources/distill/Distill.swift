import ArgumentParser

@main
struct Distill: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "distill",
        abstract: "DistillKit: knowledge distillation on the CPU, in Swift.",
        subcommands: [Bench.self])
}
