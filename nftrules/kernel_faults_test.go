package nftrules_test

import (
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"net/netip"
	"sync"
	"testing"
	"time"

	"golang.org/x/sys/unix"
	v1 "k8s.io/api/core/v1"

	"github.com/nftproxy/nftproxy/e2e/netkit"
	"github.com/nftproxy/nftproxy/nftrules"
	"github.com/nftproxy/nftproxy/nftrules/nft"
	"github.com/nftproxy/nftproxy/proxier/model"
)

// Fault suite, scenario 4 (issue 10): netlink faults injected into the real
// reconciler through its test seam (Options.WrapBatchIO), each into a
// partial sync that adds, deletes and changes Services:
//
//   - ENOBUFS after the commit: the kernel applied the batch, but reading
//     its answers fails (a receive queue overrun);
//   - EPERM on the batch: the kernel refuses the batch as a whole, as
//     nfnetlink answers a sender without CAP_NET_ADMIN;
//   - EEXIST in the middle of the batch: another writer added one of the
//     batch's dispatch keys, with another verdict, between our read and
//     our send; the kernel refuses the batch at that message;
//   - a short send, the batch's tail lost (no batch end: the kernel
//     aborts), or the second half of its messages lost with the batch end
//     kept (the kernel commits the first half).
//
// Required after each: the sync reports the error (or, for ENOBUFS, has
// re-read the kernel and found the batch committed), an unchanged Service
// still answers, the next sync is a full one even though a partial one is
// asked for, and afterwards the kernel holds exactly a fresh Build of the
// model (nothing lost, nothing doubled) and real TCP reaches sampled
// ClusterIPs.
func TestKernelNetlinkFaults(t *testing.T) {
	tn := newTestNode(t, 3)
	tn.routed.ServeEcho(8080)
	inj := &faultInjector{}
	rec := nftrules.NewReconciler(nft.Options{NetNSFd: tn.node.FD(), WrapBatchIO: inj.wrap})
	t.Cleanup(func() { rec.Close() })
	m := &faultModel{st: &model.State{NodeName: "node", ClusterCIDRs: clusterCIDRs}}
	stable := m.add(0, 1, 2)
	for range 20 {
		m.add(0, 1)
	}
	b := nftrules.NewBuilder()
	ctx := context.Background()
	if _, err := rec.Sync(ctx, b.Build(m.st), true); err != nil {
		t.Fatal(err)
	}

	for _, fc := range []struct {
		name string
		// fault is the BatchIO wrapping the socket for the faulty batch.
		fault func(io nft.BatchIO, tc *faultCase) nft.BatchIO
		// ok: the sync succeeds (the kernel committed the batch);
		// otherwise it fails, with errno if that is not 0.
		ok    bool
		errno unix.Errno
		// foreign counts the objects another writer changed: after the
		// failed sync the kernel holds the state before plus those. -1:
		// not checked (the kernel may have committed part of the batch).
		foreign int
	}{
		{"ENOBUFS after the commit", func(io nft.BatchIO, tc *faultCase) nft.BatchIO {
			return &recvFails{BatchIO: io, err: fmt.Errorf("recvfrom: %w", unix.ENOBUFS)}
		}, true, 0, 0},
		{"EPERM on the batch", func(io nft.BatchIO, tc *faultCase) nft.BatchIO {
			return &refused{BatchIO: io, errno: unix.EPERM}
		}, false, unix.EPERM, 0},
		{"EEXIST in the middle of the batch", func(io nft.BatchIO, tc *faultCase) nft.BatchIO {
			return &racedBy{BatchIO: io, before: func() error {
				// Another writer takes one of the batch's new keys.
				out, err := tn.node.Exec("nft", "add", "element", "ip", "nftproxy", nftrules.SetServiceIPs,
					fmt.Sprintf("{ %s . tcp . 80 : drop }", tc.added.ClusterIPs[0]))
				if err != nil {
					return fmt.Errorf("%v: %s", err, out)
				}
				return nil
			}}
		}, false, unix.EEXIST, 1},
		{"short send, the tail lost", func(io nft.BatchIO, tc *faultCase) nft.BatchIO {
			return &shortSend{BatchIO: io, keepEnd: false}
		}, false, 0, 0},
		{"short send, the second half lost, batch end kept", func(io nft.BatchIO, tc *faultCase) nft.BatchIO {
			return &shortSend{BatchIO: io, keepEnd: true}
		}, false, 0, -1},
	} {
		t.Run(fc.name, func(t *testing.T) {
			before := nftrules.Build(m.st)
			tc := &faultCase{}
			for range 8 {
				tc.added = m.add(1, 2)
			}
			m.remove(4)
			m.changeEndpoints(3, 2)
			inj.arm(func(io nft.BatchIO) nft.BatchIO { return fc.fault(io, tc) })
			res, err := rec.Sync(ctx, b.Build(m.st), false)
			if !inj.fired() {
				t.Fatal("the fault was not injected: the test proves nothing")
			}
			t.Logf("faulty sync: full %v, %d objects, %d messages: %v", res.Full, res.Objects, res.Messages, err)
			switch {
			case fc.ok && err != nil:
				t.Errorf("sync: %v; want success (the kernel committed the batch)", err)
			case !fc.ok && err == nil:
				t.Error("sync succeeded; want an error")
			case fc.errno != 0 && !errors.Is(err, fc.errno):
				t.Errorf("sync: %v; want %v", err, fc.errno)
			}
			if fc.ok {
				expectKernel(t, rec, nftrules.Build(m.st), 0, "after the committed batch")
			} else if fc.foreign >= 0 {
				// Refused as a whole: the kernel holds the state before
				// (and the other writer's change).
				expectKernel(t, rec, before, fc.foreign, "after the refused batch")
			}
			expectAnswers(t, tn.client, stable)

			res, err = rec.Sync(ctx, b.Build(m.st), false)
			if err != nil {
				t.Fatalf("the sync after the fault: %v", err)
			}
			if !res.Full {
				t.Error("the sync after the fault was partial; want it to read the kernel (full)")
			}
			t.Logf("next sync: full %v, %d objects", res.Full, res.Objects)
			expectKernel(t, rec, nftrules.Build(m.st), 0, "after the next sync")
			for _, sp := range []*model.ServicePort{stable, tc.added, m.st.Services[len(m.st.Services)/2]} {
				expectAnswers(t, tn.client, sp)
			}
			if res, err := rec.Sync(ctx, b.Build(m.st), false); err != nil || res.Full || res.Objects != 0 {
				t.Errorf("the sync after that: full %v, %d objects, %v; want a partial one with nothing to do", res.Full, res.Objects, err)
			}
		})
	}
}

// faultCase is what a fault may need to know of its batch.
type faultCase struct {
	added *model.ServicePort // the last Service the batch adds
}

// faultModel is a model of TCP Services 10.96.1.N:80 on pods' port 8080.
type faultModel struct {
	st   *model.State
	next uint32
}

func (m *faultModel) add(pods ...int) *model.ServicePort {
	m.next++
	ip := fmt.Sprintf("10.96.%d.%d", 1+m.next/250, m.next%250+1)
	sp := svc(m.next, fmt.Sprintf("svc-%d", m.next), v1.ProtocolTCP, 80, []string{ip}, 8080, pods...)
	m.st.Services = append(m.st.Services, sp)
	return sp
}

// remove deletes n Services, oldest first, keeping the first (stable) one.
func (m *faultModel) remove(n int) {
	m.st.Services = append(m.st.Services[:1], m.st.Services[1+n:]...)
}

// changeEndpoints gives n Services (after the stable one) the pods
// {0..k-1} but one: every call changes them.
func (m *faultModel) changeEndpoints(n, k int) {
	for i := 1; i <= n && i < len(m.st.Services); i++ {
		old := m.st.Services[i]
		pods := []int{}
		for p := range 3 {
			if len(pods) < k && p != int(m.next)%3 {
				pods = append(pods, p)
			}
		}
		m.st.Services[i] = svc(old.ID, old.Name.Name, v1.ProtocolTCP, 80, []string{old.ClusterIPs[0].String()}, 8080, pods...)
	}
}

// expectKernel checks that our tables in the kernel differ from want by
// exactly `differ` objects (0: they are want).
func expectKernel(t *testing.T, rec *nft.Reconciler, want *nft.Ruleset, differ int, when string) {
	t.Helper()
	live, err := rec.ReadLive()
	if err != nil {
		t.Fatal(err)
	}
	if tx := nft.Diff(live, want); tx.Objects() != differ {
		t.Errorf("%s: the kernel differs from the model by %d objects (%v), want %d", when, tx.Objects(), opSummary(tx), differ)
	}
}

// expectAnswers checks that sp's ClusterIP answers over TCP.
func expectAnswers(t *testing.T, from *netkit.NS, sp *model.ServicePort) {
	t.Helper()
	dst := netip.AddrPortFrom(sp.ClusterIPs[0], sp.Port)
	if _, err := from.DialTCP(dst, time.Second); err != nil {
		t.Errorf("%s (%s): %v", dst, sp.Name, err)
	}
}

// faultInjector wraps the socket of the next batch only.
type faultInjector struct {
	mu    sync.Mutex
	next  func(nft.BatchIO) nft.BatchIO
	count int
}

func (f *faultInjector) arm(w func(nft.BatchIO) nft.BatchIO) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.next = w
}

func (f *faultInjector) wrap(io nft.BatchIO) nft.BatchIO {
	f.mu.Lock()
	defer f.mu.Unlock()
	w := f.next
	if w == nil {
		return io
	}
	f.next = nil
	f.count++
	return w(io)
}

// fired reports (once) whether the armed fault wrapped a batch.
func (f *faultInjector) fired() bool {
	f.mu.Lock()
	defer f.mu.Unlock()
	n := f.count
	f.count = 0
	return n > 0 && f.next == nil
}

// recvFails sends the batch, then fails the first read of its answers.
type recvFails struct {
	nft.BatchIO
	err  error
	done bool
}

func (r *recvFails) Recv(buf []byte) (int, error) {
	if !r.done {
		r.done = true
		return 0, r.err
	}
	return r.BatchIO.Recv(buf)
}

// refused does not send the batch: the kernel's answer is an error about
// the batch's first message, as nfnetlink_rcv sends for a sender without
// CAP_NET_ADMIN.
type refused struct {
	nft.BatchIO
	errno  unix.Errno
	answer []byte
}

func (r *refused) Send(batch [][]byte) error {
	first := batch[0][:unix.NLMSG_HDRLEN]
	r.answer = binary.NativeEndian.AppendUint32(nil, uint32(unix.NLMSG_HDRLEN+4+len(first)))
	r.answer = binary.NativeEndian.AppendUint16(r.answer, unix.NLMSG_ERROR)
	r.answer = binary.NativeEndian.AppendUint16(r.answer, 0)
	r.answer = binary.NativeEndian.AppendUint32(r.answer, binary.NativeEndian.Uint32(first[8:]))
	r.answer = binary.NativeEndian.AppendUint32(r.answer, 0)
	r.answer = binary.NativeEndian.AppendUint32(r.answer, uint32(-int32(r.errno)))
	r.answer = append(r.answer, first...)
	return nil
}

func (r *refused) Recv(buf []byte) (int, error) {
	if r.answer == nil {
		return r.BatchIO.Recv(buf)
	}
	n := copy(buf, r.answer)
	r.answer = nil
	return n, nil
}

// racedBy runs another writer's change just before the batch is sent.
type racedBy struct {
	nft.BatchIO
	before func() error
}

func (r *racedBy) Send(batch [][]byte) error {
	if err := r.before(); err != nil {
		return fmt.Errorf("the other writer: %w", err)
	}
	return r.BatchIO.Send(batch)
}

// shortSend sends the batch begin and the first half of the messages; with
// keepEnd also the batch end.
type shortSend struct {
	nft.BatchIO
	keepEnd bool
}

func (s *shortSend) Send(batch [][]byte) error {
	var msgs [][]byte
	for b := bytes.Join(batch, nil); len(b) >= unix.NLMSG_HDRLEN; {
		l := int(binary.NativeEndian.Uint32(b)+unix.NLMSG_ALIGNTO-1) &^ (unix.NLMSG_ALIGNTO - 1)
		msgs, b = append(msgs, b[:l]), b[l:]
	}
	// begin, messages..., end
	cut := 1 + (len(msgs)-2)/2
	var out []byte
	for _, m := range msgs[:cut] {
		out = append(out, m...)
	}
	if s.keepEnd {
		out = append(out, msgs[len(msgs)-1]...)
	}
	return s.BatchIO.Send([][]byte{out})
}
