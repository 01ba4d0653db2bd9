package rb.peers;

import org.apache.flink.api.common.eventtime.WatermarkStrategy;
import org.apache.flink.api.common.functions.OpenContext;
import org.apache.flink.api.common.functions.RichMapFunction;
import org.apache.flink.api.common.state.CheckpointListener;
import org.apache.flink.api.common.state.ValueState;
import org.apache.flink.api.common.state.ValueStateDescriptor;
import org.apache.flink.api.common.typeinfo.Types;
import org.apache.flink.api.connector.source.util.ratelimit.RateLimiterStrategy;
import org.apache.flink.api.java.functions.KeySelector;
import org.apache.flink.connector.datagen.source.DataGeneratorSource;
import org.apache.flink.connector.datagen.source.GeneratorFunction;
import org.apache.flink.streaming.api.environment.StreamExecutionEnvironment;
import org.apache.flink.streaming.api.functions.sink.v2.DiscardingSink;

/**
 * The lakehouse's {@code orders-enrichment} job in its two builds, for the runbook's "Flink job
 * restarts repeatedly" situation on the rb real-peer tier.
 *
 * <p>Generated orders are keyed by customer; the enrichment keeps a per-customer count in keyed state
 * (so checkpoints carry real state) and writes to a discarding sink. Operator uids are fixed and the
 * same in both builds, so a checkpoint of one restores into the other.
 *
 * <p>The broken build ({@code crash} as third argument) meets an upstream schema change: once a
 * checkpoint of the current attempt has completed, its next record fails with a
 * {@link SchemaChangeException}, so the job crash-loops through its restart strategy, leaving a
 * retained checkpoint at every attempt. The fixed build (no arguments, or anything else as third
 * argument) runs for ever.
 *
 * <p>Arguments (all optional): {@code <job name> <records per second> <crash|fixed>}.
 */
public final class OrdersJob {
    private static final long CUSTOMERS = 16L;

    private OrdersJob() {}

    public static void main(String[] args) throws Exception {
        final String name = args.length > 0 ? args[0] : "orders-enrichment";
        final double perSecond = args.length > 1 ? Double.parseDouble(args[1]) : 50.0;
        final boolean crash = args.length > 2 && args[2].equals("crash");

        StreamExecutionEnvironment env = StreamExecutionEnvironment.getExecutionEnvironment();
        DataGeneratorSource<Long> orders = new DataGeneratorSource<>(
                new OrderIds(), Long.MAX_VALUE, RateLimiterStrategy.perSecond(perSecond), Types.LONG);
        env.fromSource(orders, WatermarkStrategy.noWatermarks(), "Source: orders")
                .uid("rb-orders-gen")
                .keyBy(new Customer(), Types.LONG)
                .map(new Enrich(crash))
                .uid("rb-orders-enrich")
                .name("enrich")
                .sinkTo(new DiscardingSink<>())
                .uid("rb-orders-sink")
                .name("Sink: paimon");
        env.execute(name);
    }

    /** What a Paimon sink throws when a column's type changed upstream. */
    public static final class SchemaChangeException extends RuntimeException {
        private static final long serialVersionUID = 1L;

        SchemaChangeException(String message) {
            super(message);
        }
    }

    /** The i-th order id is i. */
    static final class OrderIds implements GeneratorFunction<Long, Long> {
        @Override
        public Long map(Long index) {
            return index;
        }
    }

    /** The customer an order belongs to. */
    static final class Customer implements KeySelector<Long, Long> {
        @Override
        public Long getKey(Long order) {
            return order % CUSTOMERS;
        }
    }

    /** Counts orders per customer; the broken build fails after the attempt's first checkpoint. */
    static final class Enrich extends RichMapFunction<Long, Long> implements CheckpointListener {
        private final boolean crash;
        private transient ValueState<Long> seen;
        private transient volatile boolean checkpointed;

        Enrich(boolean crash) {
            this.crash = crash;
        }

        @Override
        public void open(OpenContext context) {
            seen = getRuntimeContext().getState(new ValueStateDescriptor<>("seen", Types.LONG));
            checkpointed = false;
        }

        @Override
        public void notifyCheckpointComplete(long checkpointId) {
            checkpointed = true;
        }

        @Override
        public Long map(Long order) throws Exception {
            if (crash && checkpointed) {
                throw new SchemaChangeException("Schema mismatch writing order " + order
                        + " to paimon table lake.orders_enriched: column 'amount' changed from DECIMAL(10,2)"
                        + " to STRING upstream, and the sink's type mapping does not allow it"
                        + " (allow_non_string_to_string is off)");
            }
            Long before = seen.value();
            long now = before == null ? 1L : before + 1L;
            seen.update(now);
            return now;
        }
    }
}
