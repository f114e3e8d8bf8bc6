package agent

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"strings"
	"time"
)

// nfslab-next: the command the presenter types in the demo's shell for the next step. It runs
// the agent binary as DemoNextCommand, which asks the agent over a unix socket and prints the
// answer.

// DemoNextCommand is the hidden subcommand behind nfslab-next.
const DemoNextCommand = "agent-demo-next"

// nextSocket is where the agent listens for nfslab-next.
const nextSocket = demoDir + "/next.sock"

// nextRequest is what nfslab-next sends.
const nextRequest = "next"

// serveNext answers nfslab-next until ctx ends or stop is called.
func serveNext(ctx context.Context, gate *demoGate, log *slog.Logger) (stop func(), err error) {
	if err := os.MkdirAll(demoDir, 0o755); err != nil {
		return nil, fmt.Errorf("listen for %s: %w", nextCommand, err)
	}
	_ = os.Remove(nextSocket)
	ln, err := net.Listen("unix", nextSocket)
	if err != nil {
		return nil, fmt.Errorf("listen for %s: %w", nextCommand, err)
	}
	go func() {
		<-ctx.Done()
		ln.Close()
	}()
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			go answerNext(c, gate, log)
		}
	}()
	return func() { ln.Close() }, nil
}

// answerNext reads one request from c and answers it.
func answerNext(c net.Conn, gate *demoGate, log *slog.Logger) {
	defer c.Close()
	_ = c.SetDeadline(time.Now().Add(5 * time.Second))
	line, err := bufio.NewReader(io.LimitReader(c, 256)).ReadString('\n')
	if err != nil {
		log.Warn("read a request from "+nextCommand, "err", err)
		return
	}
	answer := answerTo(strings.TrimSpace(line), gate)
	log.Info("presenter: " + answer)
	_, _ = fmt.Fprintln(c, answer)
}

// answerTo is the agent's answer to one nfslab-next request.
func answerTo(req string, gate *demoGate) string {
	if req != nextRequest {
		return fmt.Sprintf("unknown request %q (want %q)", req, nextRequest)
	}
	return gate.request()
}

// DemoNextMain is the body of DemoNextCommand: it asks the agent for the next step and prints
// the answer.
func DemoNextMain(out io.Writer, args []string) error {
	if len(args) > 0 {
		return fmt.Errorf("%s takes no arguments", nextCommand)
	}
	c, err := net.DialTimeout("unix", nextSocket, 5*time.Second)
	if err != nil {
		if errors.Is(err, os.ErrNotExist) {
			return fmt.Errorf("%s works only in the shell of nfslab demo: %w", nextCommand, err)
		}
		return fmt.Errorf("ask the demo for the next step: %w", err)
	}
	defer c.Close()
	_ = c.SetDeadline(time.Now().Add(10 * time.Second))
	if _, err := fmt.Fprintln(c, nextRequest); err != nil {
		return fmt.Errorf("ask the demo for the next step: %w", err)
	}
	answer, err := bufio.NewReader(c).ReadString('\n')
	if err != nil {
		return fmt.Errorf("read the demo's answer: %w", err)
	}
	_, err = io.WriteString(out, answer)
	return err
}
