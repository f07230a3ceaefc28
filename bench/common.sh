# bench/common.sh: sourced by bench.sh, scale.sh and scale_images.sh (not run on its own).

# The shared acrbench harness: beside the checkout (/work/main -> /work/shared/bench), or two
# levels up for a worktree (/work/wt/NAME -> /work/shared/bench). HARNESS overrides it.
harness_dir() { # ROOT
    if [[ -n ${HARNESS:-} ]]; then
        echo "$HARNESS"
    else
        cd "$1/../shared/bench" 2>/dev/null || cd "$1/../../shared/bench" && pwd
    fi
}

# Before timing anything (bench.sh: before each job): empty OUT/trash when less than
# MIN_FREE_GB is free, drop the clean page cache when less than MIN_FREE_MEM_GB of memory is
# free, then wait until COOLDOWN s have passed since the last big delete (recorded in
# LAST_DELETE): deleting many inodes slows ext4 inode allocation for minutes (harness README,
# "Clean destination").
purge_and_cool_down() { # OUT
    local out=$1
    MIN_FREE_GB=${MIN_FREE_GB:-30}
    COOLDOWN=${COOLDOWN:-370}
    LAST_DELETE=${LAST_DELETE:-/var/tmp/acrbench-perf/last_delete}
    if (( $(df --output=avail -B1G "$out" | tail -1) < MIN_FREE_GB )) && [[ -n $(ls -A "$out/trash") ]]; then
        echo "== purging $out/trash"
        # podman leaves its storage's overlay directory mounted, and the prepare step moves
        # it into the trash mounted: unmount what is mounted there first (deepest first), or
        # the delete fails with EBUSY and the bench stops.
        findmnt -rn -o TARGET | { grep "^${out%/}/trash/" || true; } | sort -r |
            while read -r mounted; do
                umount -l "$mounted" || true
            done
        rm -rf "${out:?}/trash"/*
        sync
        date +%s >"$LAST_DELETE"
    fi
    # The prepare step evicts each run's outputs, but a page cache already full of other work
    # (builds, test runs, ad-hoc pulls) makes every write of every job reclaim first (measured:
    # a debianish rootfs pull's system time 0.48 s -> 1.5 s). Start with free memory if allowed.
    MIN_FREE_MEM_GB=${MIN_FREE_MEM_GB:-8}
    if (( $(awk '/^MemFree:/ {print int($2 / 1048576)}' /proc/meminfo) < MIN_FREE_MEM_GB )) &&
        [[ -w /proc/sys/vm/drop_caches ]]; then
        echo "== less than $MIN_FREE_MEM_GB GB of memory free: dropping the clean page cache"
        sync
        echo 1 >/proc/sys/vm/drop_caches
    fi
    local wait_s=$(( $(cat "$LAST_DELETE" 2>/dev/null || echo 0) + COOLDOWN - $(date +%s) ))
    if (( wait_s > 0 )); then
        echo "== cooldown ${wait_s}s after a big delete"
        sleep "$wait_s"
    fi
}
