# Removes everything a node of internal/cluster leaves on the host. The watchdog runs
# it once the node's owner stops it or dies, so a clean stop and a crash end the same
# way; Start also runs it before a new node, in case a machine reboot or a killed
# watchdog left something behind.
#
# Arguments: the node's cgroup name, its state directory ("" for none) and the host
# end of its veth. Prints what it could not remove and exits 1 then.
cg=$1 dir=$2 veth=$3
[ -n "$cg" ] && [ -n "$veth" ] || { echo "teardown: missing arguments" >&2; exit 2; }
failed=0

# The node's cgroup in every hierarchy: cgroup v1 mounts each controller at
# /sys/fs/cgroup/<controller>, v2 has one tree at /sys/fs/cgroup.
cgroups() {
	for d in /sys/fs/cgroup/*/"$cg" /sys/fs/cgroup/"$cg"; do
		[ -d "$d" ] && echo "$d"
	done
}

# Every process of the node runs under that cgroup: its daemons, containerd's shims
# and every container (kubelet's cgroup root). Killing them also ends the node's
# mount and network namespaces, and with them every mount, the CNI bridge, the pods'
# network namespaces and kube-proxy's iptables chains, which exist nowhere else.
# Kill until none is left: a dying daemon may still fork.
tries=0
while :; do
	pids=$(for d in $(cgroups); do find "$d" -name cgroup.procs -exec cat {} +; done | sort -u)
	[ -z "$pids" ] && break
	# shellcheck disable=SC2086 # one argument per pid
	kill -KILL $pids 2>/dev/null
	tries=$((tries + 1))
	if [ "$tries" -ge 300 ]; then
		echo "teardown: processes still in cgroup $cg after 30s:" $pids >&2
		failed=1
		break
	fi
	sleep 0.1
done

# The cgroups themselves, deepest first. A cgroup whose last process has just exited
# may refuse removal for a moment.
tries=0
while [ -n "$(cgroups)" ]; do
	for d in $(cgroups); do
		find "$d" -depth -type d -exec rmdir {} + 2>/dev/null
	done
	tries=$((tries + 1))
	if [ "$tries" -ge 100 ]; then
		echo "teardown: cgroups left:" $(cgroups) >&2
		failed=1
		break
	fi
	[ -n "$(cgroups)" ] && sleep 0.1
done

# The host end of the veth goes with the node's network namespace; this is for a
# namespace that somehow outlived its processes.
ip link del "$veth" 2>/dev/null

if [ -n "$dir" ]; then
	# kubelet sets these on the host at start (they are not per namespace).
	if [ -f "$dir/host-sysctls" ]; then
		while IFS='=' read -r key value; do
			sysctl -qw "$key=$value" || failed=1
		done <"$dir/host-sysctls"
	fi
	# The node binds its kubelet directory over /var/lib/kubelet, which has to exist
	# on the host for that; remove it if the node made it.
	if [ -f "$dir/made-var-lib-kubelet" ]; then
		rmdir /var/lib/kubelet 2>/dev/null || {
			echo "teardown: /var/lib/kubelet is not empty; left in place" >&2
			failed=1
		}
	fi
	rm -rf "$dir" || failed=1
fi
exit "$failed"
