package lab

import (
	"context"
	"fmt"
	"sort"
	"sync"
)

// Deployment is a set of test pods labelled app=<Name>, placed round-robin
// over Nodes. The lab manages it itself (there is no deployment or
// ReplicaSet controller in the lab), like a Deployment with a fixed
// placement.
type Deployment struct {
	Name  string
	Nodes []string // placement, in round-robin order
	pods  []string // current pods, oldest first
	seq   int      // next pod number; names are never reused
}

// CreateDeployment runs replicas pods named <name>-<n>, labelled
// app=<name>, placed round-robin over nodes (default: every node). It
// returns once every pod is running and reported Ready.
func (l *Lab) CreateDeployment(ctx context.Context, name string, replicas int, nodes ...string) (*Deployment, error) {
	if len(nodes) == 0 {
		for _, n := range l.nodes {
			nodes = append(nodes, n.Name)
		}
	}
	for _, n := range nodes {
		if l.Node(n) == nil {
			return nil, fmt.Errorf("lab: deployment %s: no node %q", name, n)
		}
	}
	l.mu.Lock()
	if _, dup := l.deployments[name]; dup {
		l.mu.Unlock()
		return nil, fmt.Errorf("lab: deployment %s exists", name)
	}
	d := &Deployment{Name: name, Nodes: nodes}
	l.deployments[name] = d
	l.mu.Unlock()
	return d, l.Scale(ctx, name, replicas)
}

// Scale adds pods (round-robin placement, started concurrently) or force
// deletes the newest ones until the deployment has replicas pods.
func (l *Lab) Scale(ctx context.Context, name string, replicas int) error {
	l.mu.Lock()
	d, ok := l.deployments[name]
	if !ok {
		l.mu.Unlock()
		return fmt.Errorf("lab: no deployment %q", name)
	}
	type placed struct{ pod, node string }
	var add []placed
	var remove []string
	for len(d.pods)+len(add) < replicas {
		add = append(add, placed{fmt.Sprintf("%s-%d", d.Name, d.seq), d.Nodes[d.seq%len(d.Nodes)]})
		d.seq++
	}
	if n := len(d.pods); n > replicas {
		remove = append(remove, d.pods[replicas:]...)
		d.pods = d.pods[:replicas]
	}
	for _, a := range add {
		d.pods = append(d.pods, a.pod)
	}
	l.mu.Unlock()

	errs := make([]error, len(add)+len(remove))
	var wg sync.WaitGroup
	for i, a := range add {
		wg.Go(func() {
			_, errs[i] = l.RunPod(ctx, a.pod, a.node, map[string]string{"app": d.Name})
		})
	}
	for i, p := range remove {
		wg.Go(func() { errs[len(add)+i] = l.ForceDeletePod(ctx, p) })
	}
	wg.Wait()
	for _, err := range errs {
		if err != nil {
			return fmt.Errorf("lab: scale %s to %d: %w", name, replicas, err)
		}
	}
	return nil
}

// PodsOf returns the names of a deployment's pods, sorted.
func (l *Lab) PodsOf(name string) []string {
	l.mu.Lock()
	defer l.mu.Unlock()
	d, ok := l.deployments[name]
	if !ok {
		return nil
	}
	out := append([]string(nil), d.pods...)
	sort.Strings(out)
	return out
}
