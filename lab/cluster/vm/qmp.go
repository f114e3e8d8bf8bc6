package vm

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"time"
)

// qmp is a client of qemu's machine protocol (QMP) on one connection: JSON objects, one per
// line. qemu greets, the client negotiates capabilities, then each command gets one reply —
// {"return": …} or {"error": {"class", "desc"}} — with asynchronous {"event": …} objects in
// between, which are skipped. Commands are issued one at a time.
type qmp struct {
	conn  net.Conn
	lines *bufio.Scanner
}

// qmpMessage is one object qemu sends.
type qmpMessage struct {
	Greeting json.RawMessage `json:"QMP"`
	Return   json.RawMessage `json:"return"`
	Error    *struct {
		Class string `json:"class"`
		Desc  string `json:"desc"`
	} `json:"error"`
	Event string `json:"event"`
}

// newQMP reads qemu's greeting on conn and negotiates capabilities.
func newQMP(ctx context.Context, conn net.Conn) (*qmp, error) {
	q := &qmp{conn: conn, lines: bufio.NewScanner(conn)}
	q.lines.Buffer(make([]byte, 0, 64<<10), 4<<20)
	msg, err := q.read(ctx)
	if err != nil {
		return nil, fmt.Errorf("qmp: read qemu's greeting: %w", err)
	}
	if msg.Greeting == nil {
		return nil, errors.New("qmp: qemu's first message was not its greeting")
	}
	if err := q.execute(ctx, "qmp_capabilities", nil, nil); err != nil {
		return nil, err
	}
	return q, nil
}

// read returns the next message, honouring ctx with the connection's read deadline.
func (q *qmp) read(ctx context.Context) (qmpMessage, error) {
	deadline, ok := ctx.Deadline()
	if !ok {
		deadline = time.Time{}
	}
	_ = q.conn.SetReadDeadline(deadline)
	stop := context.AfterFunc(ctx, func() { _ = q.conn.SetReadDeadline(time.Now()) })
	defer stop()
	if !q.lines.Scan() {
		err := q.lines.Err()
		if err == nil {
			err = io.EOF
		}
		if ctx.Err() != nil {
			err = ctx.Err()
		}
		return qmpMessage{}, err
	}
	var msg qmpMessage
	if err := json.Unmarshal(q.lines.Bytes(), &msg); err != nil {
		return qmpMessage{}, fmt.Errorf("decode %q: %w", q.lines.Text(), err)
	}
	return msg, nil
}

// execute runs the command cmd with args (nil for none) and decodes its return value into ret
// (nil to ignore it).
func (q *qmp) execute(ctx context.Context, cmd string, args any, ret any) error {
	req := map[string]any{"execute": cmd}
	if args != nil {
		req["arguments"] = args
	}
	b, err := json.Marshal(req)
	if err != nil {
		return fmt.Errorf("qmp %s: encode: %w", cmd, err)
	}
	if _, err := q.conn.Write(append(b, '\n')); err != nil {
		return fmt.Errorf("qmp %s: send: %w", cmd, err)
	}
	for {
		msg, err := q.read(ctx)
		if err != nil {
			return fmt.Errorf("qmp %s: %w", cmd, err)
		}
		switch {
		case msg.Event != "" || msg.Greeting != nil:
			continue
		case msg.Error != nil:
			return fmt.Errorf("qmp %s: %s: %s", cmd, msg.Error.Class, msg.Error.Desc)
		case ret != nil && msg.Return != nil:
			if err := json.Unmarshal(msg.Return, ret); err != nil {
				return fmt.Errorf("qmp %s: decode the reply: %w", cmd, err)
			}
		}
		return nil
	}
}

// status is qemu's run state (query-status): "running", "paused", "inmigrate", "postmigrate", …
func (q *qmp) status(ctx context.Context) (string, error) {
	var st struct {
		Status string `json:"status"`
	}
	if err := q.execute(ctx, "query-status", nil, &st); err != nil {
		return "", err
	}
	return st.Status, nil
}

// migration is qemu's view of the migration in progress or last done (query-migrate).
type migration struct {
	Status    string `json:"status"` // setup, active, completed, failed, cancelled, …
	ErrorDesc string `json:"error-desc"`
	RAM       *struct {
		Transferred int64 `json:"transferred"`
		Total       int64 `json:"total"`
	} `json:"ram"`
}

func (q *qmp) migration(ctx context.Context) (migration, error) {
	var m migration
	err := q.execute(ctx, "query-migrate", nil, &m)
	return m, err
}

func (q *qmp) close() { q.conn.Close() }
