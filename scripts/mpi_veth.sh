#!/usr/bin/env bash
# Two "hosts" on one machine: the 2-rank job across two network namespaces joined by a veth pair,
# so that the ranks talk over TCP (Open MPI's tcp transport, no shared memory) as two machines
# would, against the same job on one host (shared memory). mpirun runs in namespace A and starts
# the daemon of "host" B with `ip netns exec` in place of ssh (Open MPI's plm_rsh_agent).
# Prints samples/s, the allreduce's share of the step time and bytes per step for both, and
# checks that the two runs' weights are the same bits (with 2 ranks the sum has one order).
# Needs root and `ip netns` (iproute2); optional, not part of the test command.
#
#   DISTILL_BINARY=.build/release/distill scripts/mpi_veth.sh [extra distill arguments]
set -euo pipefail
cd "$(dirname "$0")/.."
distill=$(realpath "${DISTILL_BINARY:-.build/release/distill}")
command -v mpirun >/dev/null || { echo "mpi_veth: needs mpirun (apt-get install openmpi-bin libopenmpi-dev)" >&2; exit 1; }
[ -x "$distill" ] || { echo "mpi_veth: $distill not built" >&2; exit 1; }
export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1 DISTILL_THREADS=1
a=dk-veth-a b=dk-veth-b subnet=10.231.77
remove_namespaces() { ip netns delete "$a" 2>/dev/null || true; ip netns delete "$b" 2>/dev/null || true; }
remove_namespaces  # left over from an interrupted run
work=$(mktemp -d)
trap 'remove_namespaces; rm -rf "$work"' EXIT
if ! error=$(ip netns add "$a" 2>&1); then
  echo "mpi_veth: cannot create a network namespace here: $error" >&2
  exit 1
fi
ip netns add "$b"
ip link add dk-veth-a type veth peer name dk-veth-b  # removed with the namespaces
ip link set dk-veth-a netns "$a"
ip link set dk-veth-b netns "$b"
ip -n "$a" addr add "$subnet.1/24" dev dk-veth-a
ip -n "$b" addr add "$subnet.2/24" dev dk-veth-b
for ns in "$a" "$b"; do ip -n "$ns" link set lo up; done
ip -n "$a" link set dk-veth-a up
ip -n "$b" link set dk-veth-b up

# Open MPI starts its daemon on a remote host as `AGENT HOST COMMAND...` (ssh by default).
cat >"$work/agent" <<EOF
#!/bin/sh
host=\$1; shift
case \$host in
  $subnet.1) exec ip netns exec $a /bin/sh -c "\$*" ;;
  $subnet.2) exec ip netns exec $b /bin/sh -c "\$*" ;;
esac
echo "mpi_veth agent: unknown host \$host" >&2
exit 1
EOF
chmod +x "$work/agent"
printf '%s slots=1\n%s slots=1\n' "$subnet.1" "$subnet.2" >"$work/hosts"

job=(train --model cnn-small --train-limit 4096 --epochs 1 --batch-size 128 --seed 1 --quiet "$@")
echo "mpi_veth: $(mpirun --version | head -1); load $(cut -d' ' -f1-3 /proc/loadavg); distill ${job[*]}"
# figures FOLDER: samples/s and the communication figures of the run's metrics line.
figures() {
  python3 - "$1/metrics.jsonl" <<'EOF'
import json, sys
m = json.loads(open(sys.argv[1]).read().splitlines()[-1])
print(f"{m['samples_per_second']:,.0f} samples/s, allreduce {m['allreduce_bytes_per_step'] / 1024:,.0f} KB per step, "
      f"{100 * m['allreduce_seconds'] / m['step_seconds']:.1f}% of step time on rank 0 ({m['allreduce_seconds']:.2f} of {m['step_seconds']:.2f} s)")
EOF
}
mpirun -np 2 -x DISTILL_THREADS "$distill" "${job[@]}" --output "$work/one-host" >/dev/null
echo "mpi_veth: one host, shared memory:      $(figures "$work/one-host")"
ip netns exec "$a" mpirun --hostfile "$work/hosts" -np 2 -x DISTILL_THREADS --mca plm_rsh_agent "$work/agent" \
  --mca btl tcp,self --mca btl_tcp_if_include "$subnet.0/24" --mca oob_tcp_if_include "$subnet.0/24" \
  "$distill" "${job[@]}" --output "$work/two-hosts" >/dev/null
echo "mpi_veth: two namespaces, TCP over veth: $(figures "$work/two-hosts")"
if cmp -s "$work/one-host/student.safetensors" "$work/two-hosts/student.safetensors"; then
  echo "mpi_veth: the two runs' weights are identical"
else
  echo "mpi_veth: the two runs' weights differ" >&2
  exit 1
fi
echo "mpi_veth: load after $(cut -d' ' -f1-3 /proc/loadavg)"
