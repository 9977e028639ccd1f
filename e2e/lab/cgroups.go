package lab

import (
	"bufio"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"syscall"
	"time"
)

// Cgroups of real-kubelet nodes. Each kubelet gets its own cgroupRoot
// (with a shared one, each kubelet kills the other's pods as orphans),
// made by the lab in every cgroup v1 hierarchy before kubelet starts and
// removed after the node's processes are gone. The root is placed under
// this process's own memory cgroup, so the pods stay accounted to
// whoever started the lab.

const cgroupFS = "/sys/fs/cgroup"

// cgroupHierarchies lists the cgroup v1 hierarchies mounted under
// /sys/fs/cgroup (e.g. cpu, memory, systemd), or nil on a cgroup v2 host.
func cgroupHierarchies() []string {
	var st syscall.Statfs_t
	if err := syscall.Statfs(cgroupFS, &st); err != nil || st.Type == 0x63677270 { // CGROUP2_SUPER_MAGIC
		return nil
	}
	entries, _ := os.ReadDir(cgroupFS)
	var out []string
	for _, e := range entries {
		// "unified" is the v2 hierarchy of hybrid hosts: runc makes the
		// pods' cgroups there too, so it is created and cleaned like the rest.
		// Combined hierarchies (cpu,cpuacct) appear as a directory plus
		// symlinks; take each real directory once.
		if e.Type()&os.ModeSymlink != 0 || !e.IsDir() {
			continue
		}
		out = append(out, e.Name())
	}
	return out
}

// cgroupV2 reports whether the host runs the unified hierarchy only.
func cgroupV2() bool {
	var st syscall.Statfs_t
	return syscall.Statfs(cgroupFS, &st) == nil && st.Type == 0x63677270
}

// ownCgroupBase is the cgroup path of this process in the memory
// hierarchy (or in the unified one on v2), e.g. /process_api/abc.
func ownCgroupBase() string {
	f, err := os.Open("/proc/self/cgroup")
	if err != nil {
		return "/"
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	v2 := "/"
	for sc.Scan() {
		parts := strings.SplitN(sc.Text(), ":", 3)
		if len(parts) != 3 {
			continue
		}
		for _, c := range strings.Split(parts[1], ",") {
			if c == "memory" {
				return parts[2]
			}
		}
		if parts[0] == "0" {
			v2 = parts[2]
		}
	}
	return v2
}

// makeCgroupRoot creates root (an absolute cgroup path) in every
// hierarchy, copying cpuset.cpus/mems down from the parents (a new cpuset
// cgroup starts empty and takes no tasks).
func makeCgroupRoot(root string) error {
	if cgroupV2() {
		return os.MkdirAll(filepath.Join(cgroupFS, root), 0o755)
	}
	for _, h := range cgroupHierarchies() {
		dir := filepath.Join(cgroupFS, h)
		for _, part := range strings.Split(strings.Trim(root, "/"), "/") {
			parent := dir
			dir = filepath.Join(dir, part)
			if err := os.Mkdir(dir, 0o755); err != nil && !errors.Is(err, os.ErrExist) {
				return fmt.Errorf("lab: cgroup %s: %w", dir, err)
			}
			if h == "cpuset" {
				for _, f := range []string{"cpuset.cpus", "cpuset.mems"} {
					cur, _ := os.ReadFile(filepath.Join(dir, f))
					if strings.TrimSpace(string(cur)) != "" {
						continue
					}
					v, err := os.ReadFile(filepath.Join(parent, f))
					if err != nil {
						return fmt.Errorf("lab: cgroup %s: %w", parent, err)
					}
					if err := os.WriteFile(filepath.Join(dir, f), v, 0o644); err != nil {
						return fmt.Errorf("lab: cgroup %s/%s: %w", dir, f, err)
					}
				}
			}
		}
	}
	return nil
}

// cgroupDirs returns root's directory in every hierarchy, deepest
// descendants first (the order rmdir needs).
func cgroupDirs(root string) []string {
	var tops []string
	if cgroupV2() {
		tops = []string{filepath.Join(cgroupFS, root)}
	} else {
		for _, h := range cgroupHierarchies() {
			tops = append(tops, filepath.Join(cgroupFS, h, root))
		}
	}
	var all []string
	for _, top := range tops {
		_ = filepath.WalkDir(top, func(p string, d os.DirEntry, err error) error {
			if err == nil && d.IsDir() {
				all = append(all, p)
			}
			return nil
		})
	}
	sort.Slice(all, func(i, j int) bool { return strings.Count(all[i], "/") > strings.Count(all[j], "/") })
	return all
}

// killCgroup SIGKILLs every process in root and below (the node's pods:
// they live in pod network namespaces, where namespace cleanup does not
// find them) until none is left, then removes the cgroups. Only processes
// the lab's kubelet placed there can be in these cgroups.
func killCgroup(root string) error {
	deadline := time.Now().Add(15 * time.Second)
	for {
		var pids []int
		for _, d := range cgroupDirs(root) {
			b, _ := os.ReadFile(filepath.Join(d, "cgroup.procs"))
			for _, f := range strings.Fields(string(b)) {
				if pid, err := strconv.Atoi(f); err == nil && pid != os.Getpid() {
					pids = append(pids, pid)
				}
			}
		}
		if len(pids) == 0 {
			break
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("lab: processes %v survive in cgroup %s", pids, root)
		}
		for _, pid := range pids {
			_ = syscall.Kill(pid, syscall.SIGKILL)
		}
		time.Sleep(50 * time.Millisecond)
	}
	var errs []error
	for _, d := range cgroupDirs(root) {
		// A just-emptied cgroup can be busy for a moment.
		var err error
		for i := 0; i < 50; i++ {
			if err = syscall.Rmdir(d); err == nil || errors.Is(err, syscall.ENOENT) {
				err = nil
				break
			}
			time.Sleep(20 * time.Millisecond)
		}
		if err != nil {
			errs = append(errs, fmt.Errorf("lab: rmdir %s: %w", d, err))
		}
	}
	return errors.Join(errs...)
}

// findCgroupRoots finds cgroups named <prefix>* up to four levels deep in
// the memory (or unified) hierarchy: the roots of a crashed lab, which may
// have been started from another cgroup than this process's.
func findCgroupRoots(prefix string) []string {
	top := filepath.Join(cgroupFS, "memory")
	if cgroupV2() {
		top = cgroupFS
	}
	var out []string
	_ = filepath.WalkDir(top, func(p string, d os.DirEntry, err error) error {
		if err != nil || !d.IsDir() || p == top {
			return nil
		}
		rel := strings.TrimPrefix(p, top)
		if strings.HasPrefix(d.Name(), prefix) {
			out = append(out, rel)
			return filepath.SkipDir
		}
		if strings.Count(rel, "/") >= 4 {
			return filepath.SkipDir
		}
		return nil
	})
	return out
}
