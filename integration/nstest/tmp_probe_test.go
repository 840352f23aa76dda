package nstest

import (
	"testing"
	"time"
)

func TestTmpProbe(t *testing.T) {
	lab := NewLab(t, Options{})
	lab.Server.Nft(t, `table inet t {
	chain c {
		type filter hook input priority 0;
		tcp dport 5001 reject with tcp reset
		udp dport 5001 reject with icmpx port-unreachable
		th dport 5003 reject with icmpx admin-prohibited
	}
}`)
	for _, p := range []struct{ port int }{{5001}, {5003}, {5004}} {
		for i := 0; i < 12; i++ {
			st := time.Now()
			r := lab.Client.DialUDP(t, ClientV4(1, 1), ServerV4, p.port, time.Second)
			st2 := time.Now()
			r6 := lab.Client.DialUDP(t, ClientV6(1, 1), ServerV6, p.port, time.Second)
			st3 := time.Now()
			rt := lab.Client.DialTCP(t, ClientV4(1, 2), ServerV4, p.port, time.Second)
			t.Logf("port %d #%d: udp4 %v %v  udp6 %v %v tcp4 %v", p.port, i, r, st2.Sub(st), r6, st3.Sub(st2), rt)
		}
	}
}
